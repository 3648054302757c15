//! A linearizability checker for histories of reads, writes and compare-and-sets on
//! independent registers, and of transactions on groups of two registers: the Wing & Gong
//! search with Lowe's memoization, as Porcupine and Knossos implement it.
//!
//! Each key (or group: one object of two registers) is checked on its own (linearizability
//! is compositional). An operation whose
//! outcome is unknown (a timed-out or aborted write) has no return event: it may take effect
//! at any point after its call, or never. The model is run over *sets* of possible register
//! values, which turns that nondeterminism into a deterministic search.

use std::collections::{BTreeSet, HashMap, HashSet};

/// A register value; `None` is an absent key.
pub type Value = Option<u64>;

/// Registers of one object: a key's operations use the first; a transaction's group of
/// keys uses both.
pub const SLOTS: usize = 2;

/// The state of one object.
pub type State = [Value; SLOTS];

/// One operation of a transaction's branch, on a register of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    Set { slot: usize, value: u64 },
    Delete { slot: usize },
    Get { slot: usize },
}

/// Runs a branch from `state`: the state after it, and what its gets read.
fn run_branch(mut state: State, steps: &[TxnStep]) -> (State, Vec<Value>) {
    let mut reads = Vec::new();
    for step in steps {
        match *step {
            TxnStep::Set { slot, value } => state[slot] = Some(value),
            TxnStep::Delete { slot } => state[slot] = None,
            TxnStep::Get { slot } => reads.push(state[slot]),
        }
    }
    (state, reads)
}

/// What a client asked, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A read that returned `saw`.
    Read { saw: Value },
    /// A write of `value` (acknowledged, or of unknown outcome).
    Write { value: u64 },
    /// Compare-and-set: `expected` -> `next`. `outcome`: `Some((true, _))` applied,
    /// `Some((false, current))` refused while the key held `current`; `None`: unknown.
    Cas {
        expected: Value,
        next: u64,
        outcome: Option<(bool, Value)>,
    },
    /// A transaction on a group: `then` when every `(slot, value)` compared holds (`None`:
    /// absent), `otherwise` else. `outcome`: whether it succeeded and what its gets read;
    /// `None`: unknown.
    Txn {
        compares: Vec<(usize, Value)>,
        then: Vec<TxnStep>,
        otherwise: Vec<TxnStep>,
        outcome: Option<(bool, Vec<Value>)>,
    },
}

/// One operation of a history. Times come from one logical clock shared by all clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub key: String,
    pub action: Action,
    pub call: u64,
    /// `None`: the outcome is unknown (it may have taken effect, or not).
    pub ret: Option<u64>,
    /// Which node served it, and how (for reports only).
    pub by: String,
}

impl Op {
    fn known(&self) -> bool {
        self.ret.is_some()
    }
}

/// The register's possible values after `op`, from those possible before, or `None` when
/// no value explains what the client saw.
fn step(states: &BTreeSet<State>, op: &Op) -> Option<BTreeSet<State>> {
    let mut next = BTreeSet::new();
    for &whole in states {
        if let Action::Txn {
            compares,
            then,
            otherwise,
            outcome,
        } = &op.action
        {
            let holds = compares.iter().all(|&(slot, v)| whole[slot] == v);
            let (after, reads) = run_branch(whole, if holds { then } else { otherwise });
            match outcome {
                Some((succeeded, saw)) => {
                    if *succeeded == holds && reads == *saw {
                        next.insert(after);
                    }
                }
                None => {
                    next.insert(after);
                    next.insert(whole); // perhaps it never happened
                }
            }
            continue;
        }
        // A single key's operation: the first register.
        let state = whole[0];
        let with = |value: Value| {
            let mut s = whole;
            s[0] = value;
            s
        };
        match &op.action {
            Action::Read { saw } => {
                if *saw == state {
                    next.insert(whole);
                }
            }
            Action::Write { value } => {
                next.insert(with(Some(*value)));
                if !op.known() {
                    next.insert(whole); // perhaps it never happened
                }
            }
            Action::Cas {
                expected,
                next: new,
                outcome,
            } => match outcome {
                Some((true, _)) if state == *expected => {
                    next.insert(with(Some(*new)));
                }
                Some((false, current)) if state != *expected && state == *current => {
                    next.insert(whole);
                }
                Some(_) => {}
                None => {
                    next.insert(if state == *expected {
                        with(Some(*new))
                    } else {
                        whole
                    });
                    next.insert(whole);
                }
            },
            Action::Txn { .. } => unreachable!("handled above"),
        }
    }
    (!next.is_empty()).then_some(next)
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; the longest prefix of calls that could be ordered.
    Violation {
        key: String,
        explained: usize,
    },
    /// The search took longer than its budget (no answer).
    Unknown {
        key: String,
    },
}

/// Checks every key of `history`, starting from absent keys; `budget` bounds the search
/// steps per key.
pub fn check(history: &[Op], budget: u64) -> Vec<Verdict> {
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort();
    keys.into_iter()
        .map(|key| check_key(key, &by_key[key], budget))
        .collect()
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

fn check_key(key: &str, ops: &[&Op], budget: u64) -> Verdict {
    // Events in time order; unknown outcomes return after everything else.
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        times.push((op.call, true, i));
        times.push((op.ret.unwrap_or(u64::MAX), false, i));
    }
    times.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // A doubly linked list with a sentinel head at index 0.
    let mut events = vec![Event {
        op: NIL,
        is_call: false,
        prev: NIL,
        next: NIL,
    }];
    let mut return_of = vec![0usize; ops.len()];
    for &(_, is_call, op) in &times {
        let index = events.len();
        events[index - 1].next = index;
        events.push(Event {
            op,
            is_call,
            prev: index - 1,
            next: NIL,
        });
        if !is_call {
            return_of[op] = index;
        }
    }
    let lift = |events: &mut Vec<Event>, i: usize| {
        for e in [i, return_of[events[i].op]] {
            let (prev, next) = (events[e].prev, events[e].next);
            events[prev].next = next;
            if next != NIL {
                events[next].prev = prev;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, i: usize| {
        for e in [return_of[events[i].op], i] {
            let (prev, next) = (events[e].prev, events[e].next);
            events[prev].next = e;
            if next != NIL {
                events[next].prev = e;
            }
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut states: BTreeSet<State> = BTreeSet::from([[None; SLOTS]]);
    let mut cache: HashSet<(Vec<u64>, BTreeSet<State>)> = HashSet::new();
    let mut stack: Vec<(usize, BTreeSet<State>)> = Vec::new();
    let mut longest = 0;
    let mut entry = events[0].next;
    let mut steps = 0u64;
    while events[0].next != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown { key: key.into() };
        }
        if entry == NIL {
            // Only calls remained past the last return: cannot happen with every call
            // followed by its return, but guard against a malformed list.
            break;
        }
        let event = events[entry];
        if event.is_call {
            let op = event.op;
            if let Some(next) = step(&states, ops[op]) {
                let mut after = linearized.clone();
                after[op / 64] |= 1 << (op % 64);
                if cache.insert((after.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut states, next)));
                    linearized = after;
                    longest = longest.max(stack.len());
                    lift(&mut events, entry);
                    entry = events[0].next;
                    continue;
                }
            }
            entry = event.next;
        } else {
            // The first pending return: its op was not placed before it. Backtrack.
            let Some((call, before)) = stack.pop() else {
                return Verdict::Violation {
                    key: key.into(),
                    explained: longest,
                };
            };
            states = before;
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: Action, call: u64, ret: Option<u64>) -> Op {
        Op {
            key: "k".into(),
            action,
            call,
            ret,
            by: String::new(),
        }
    }
    fn read(saw: Value, call: u64, ret: u64) -> Op {
        op(Action::Read { saw }, call, Some(ret))
    }
    fn write(value: u64, call: u64, ret: Option<u64>) -> Op {
        op(Action::Write { value }, call, ret)
    }
    fn verdict(history: &[Op]) -> Verdict {
        check(history, 1_000_000).pop().unwrap()
    }

    #[test]
    fn cases() {
        type Case = (&'static str, Vec<Op>, bool);
        let cases: Vec<Case> = vec![
            ("empty read", vec![read(None, 1, 2)], true),
            (
                "read after write",
                vec![write(1, 1, Some(2)), read(Some(1), 3, 4)],
                true,
            ),
            (
                "stale read after an acknowledged write",
                vec![
                    write(1, 1, Some(2)),
                    write(2, 3, Some(4)),
                    read(Some(1), 5, 6),
                ],
                false,
            ),
            (
                "concurrent read may see either",
                vec![
                    write(1, 1, Some(2)),
                    write(2, 3, Some(6)),
                    read(Some(1), 4, 5),
                ],
                true,
            ),
            (
                "lost acknowledged write",
                vec![write(1, 1, Some(2)), read(None, 3, 4)],
                false,
            ),
            (
                "unknown write may never happen",
                vec![write(1, 1, None), read(None, 3, 4)],
                true,
            ),
            (
                "unknown write may happen late",
                vec![write(1, 1, None), read(None, 3, 4), read(Some(1), 5, 6)],
                true,
            ),
            (
                "unknown write cannot un-happen",
                vec![write(1, 1, None), read(Some(1), 3, 4), read(None, 5, 6)],
                false,
            ),
            (
                "cas applies from the expected value",
                vec![
                    write(1, 1, Some(2)),
                    op(
                        Action::Cas {
                            expected: Some(1),
                            next: 2,
                            outcome: Some((true, Some(2))),
                        },
                        3,
                        Some(4),
                    ),
                    read(Some(2), 5, 6),
                ],
                true,
            ),
            (
                "cas that succeeds against the wrong value",
                vec![
                    write(1, 1, Some(2)),
                    op(
                        Action::Cas {
                            expected: Some(7),
                            next: 2,
                            outcome: Some((true, Some(2))),
                        },
                        3,
                        Some(4),
                    ),
                ],
                false,
            ),
            (
                "refused cas reports the current value",
                vec![
                    write(1, 1, Some(2)),
                    op(
                        Action::Cas {
                            expected: None,
                            next: 2,
                            outcome: Some((false, Some(1))),
                        },
                        3,
                        Some(4),
                    ),
                ],
                true,
            ),
        ];
        for (case, history, linearizable) in cases {
            let v = verdict(&history);
            assert_eq!(v == Verdict::Linearizable, linearizable, "{case}: {v:?}");
        }
    }

    fn txn(
        compares: Vec<(usize, Value)>,
        then: Vec<TxnStep>,
        outcome: Option<(bool, Vec<Value>)>,
        call: u64,
        ret: Option<u64>,
    ) -> Op {
        let otherwise = vec![TxnStep::Get { slot: 0 }, TxnStep::Get { slot: 1 }];
        let action = Action::Txn {
            compares,
            then,
            otherwise,
            outcome,
        };
        op(action, call, ret)
    }

    #[test]
    fn transactions_on_a_group() {
        use TxnStep::{Get, Set};
        let both = |value| vec![Set { slot: 0, value }, Set { slot: 1, value }];
        let read_both = || vec![Get { slot: 0 }, Get { slot: 1 }];
        type Case = (&'static str, Vec<Op>, bool);
        let cases: Vec<Case> = vec![
            (
                "writes both, then a read sees both",
                vec![
                    txn(vec![], both(1), Some((true, vec![])), 1, Some(2)),
                    txn(
                        vec![],
                        read_both(),
                        Some((true, vec![Some(1), Some(1)])),
                        3,
                        Some(4),
                    ),
                ],
                true,
            ),
            (
                "a torn read: one key of an applied transaction",
                vec![
                    txn(vec![], both(1), Some((true, vec![])), 1, Some(2)),
                    txn(
                        vec![],
                        read_both(),
                        Some((true, vec![Some(1), None])),
                        3,
                        Some(4),
                    ),
                ],
                false,
            ),
            (
                "a comparison that held where it could not",
                vec![
                    txn(vec![], both(1), Some((true, vec![])), 1, Some(2)),
                    txn(vec![(0, None)], both(2), Some((true, vec![])), 3, Some(4)),
                ],
                false,
            ),
            (
                "a failed comparison runs the other branch",
                vec![
                    txn(vec![], both(1), Some((true, vec![])), 1, Some(2)),
                    txn(
                        vec![(0, None)],
                        both(2),
                        Some((false, vec![Some(1), Some(1)])),
                        3,
                        Some(4),
                    ),
                ],
                true,
            ),
            (
                "an unknown transaction may apply late, whole",
                vec![
                    txn(vec![], both(1), None, 1, None),
                    txn(
                        vec![],
                        read_both(),
                        Some((true, vec![None, None])),
                        2,
                        Some(3),
                    ),
                    txn(
                        vec![],
                        read_both(),
                        Some((true, vec![Some(1), Some(1)])),
                        4,
                        Some(5),
                    ),
                ],
                true,
            ),
            (
                "a single key's write is the first register of its object",
                vec![
                    write(7, 1, Some(2)),
                    txn(
                        vec![(0, Some(7))],
                        read_both(),
                        Some((true, vec![Some(7), None])),
                        3,
                        Some(4),
                    ),
                ],
                true,
            ),
        ];
        for (case, history, linearizable) in cases {
            let v = verdict(&history);
            assert_eq!(v == Verdict::Linearizable, linearizable, "{case}: {v:?}");
        }
    }
}
