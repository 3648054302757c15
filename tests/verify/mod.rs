//! A Jepsen-style verification run: concurrent clients read, write and compare-and-set a few
//! keys of an in-process cluster (real sockets, real files) while a nemesis injects faults.
//! Afterwards every history is checked for linearizability, every acknowledged write must be
//! at its index on every member, the members' states must be identical, no two nodes may
//! ever have held a lease at the same instant, and no two sessions a lock (see [`locks`]).

pub mod checker;
pub mod clients;
pub mod history;
pub mod locks;
pub mod nemesis;
pub mod txns;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Op, Verdict};
use history::{Clock, History, LeaseLogs};
use nemesis::{Faults, Nemesis};

use crate::common::{fast, Cluster, TempDir};

/// How every node of a run is configured (joiners too).
pub type Tune = Arc<dyn Fn(&mut raftline::Config) + Send + Sync>;

/// Search steps the checker may take per key before it gives up.
pub const CHECK_BUDGET: u64 = 50_000_000;

/// What a run did and found.
pub struct Report {
    pub size: usize,
    pub seed: u64,
    pub ops: usize,
    /// Of which transactions.
    pub txns: usize,
    pub unknown: usize,
    pub refused: u64,
    pub acked: usize,
    pub faults: Faults,
    /// Lease intervals checked.
    pub leases: usize,
    /// Lock holds checked.
    pub holds: Vec<locks::Hold>,
    pub history: Vec<Op>,
    pub problems: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} nodes, seed {}: {} operations checked ({} transactions, {} of unknown outcome, \
             {} refused), {} acknowledged writes, {} lease intervals, {} lock holds, faults {:?}",
            self.size,
            self.seed,
            self.ops,
            self.txns,
            self.unknown,
            self.refused,
            self.acked,
            self.leases,
            self.holds.len(),
            self.faults
        )
    }
}

/// Runs `clients` clients on `keys` keys of a `size`-node durable cluster for `duration`
/// under the nemesis, then checks everything.
pub async fn run(size: usize, seed: u64, duration: Duration, clients: u64, keys: usize) -> Report {
    let dir = Arc::new(TempDir::new(&format!("verify-{size}-{seed}")));
    let leases = LeaseLogs::default();
    let tune = {
        let (dir, leases) = (Arc::clone(&dir), leases.clone());
        move |c: &mut raftline::Config| {
            fast(c);
            c.data_dir = Some(dir.join(&c.name));
            c.lease_log = Some(leases.of(&c.name));
        }
    };
    let cluster = Cluster::start(size, tune.clone()).await;
    cluster.wait_for_leader().await;
    let mut nemesis = Nemesis::new(cluster, Arc::new(tune), seed);

    let clock = Arc::new(Clock::default());
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let keys: Vec<String> = (0..keys).map(|k| format!("key{k}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        tasks.spawn(clients::run(
            client + 1,
            seed.wrapping_mul(1000).wrapping_add(client),
            Arc::clone(&nemesis.nodes),
            keys.clone(),
            Arc::clone(&clock),
            Arc::clone(&history),
            Arc::clone(&stop),
        ));
    }
    let groups: Vec<String> = (0..2).map(|g| format!("group{g}")).collect();
    for client in 0..2 {
        tasks.spawn(txns::run(
            client + 1,
            seed.wrapping_mul(3000).wrapping_add(client),
            Arc::clone(&nemesis.nodes),
            groups.clone(),
            Arc::clone(&clock),
            Arc::clone(&history),
            Arc::clone(&stop),
        ));
    }
    let holds = locks::Holds::default();
    for client in 0..3 {
        tasks.spawn(locks::run(
            seed.wrapping_mul(7000).wrapping_add(client),
            Arc::clone(&nemesis.nodes),
            Arc::clone(&holds),
            Arc::clone(&stop),
        ));
    }
    nemesis.run(Instant::now() + duration).await;
    // Healed and all running: the clients go on a little, then stop.
    nemesis.cluster.wait_for_leader().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let spans = leases.intervals();

    let history = std::mem::take(&mut *history.lock().unwrap());
    let mut problems = Vec::new();
    for verdict in checker::check(&history.ops, CHECK_BUDGET) {
        if verdict != Verdict::Linearizable {
            problems.push(format!("{verdict:?}"));
        }
    }
    problems.extend(history::lease_overlaps(&spans));
    let holds = std::mem::take(&mut *holds.lock().unwrap());
    problems.extend(locks::check(&holds));
    problems.extend(locks_left(&nemesis.cluster).await);
    problems.extend(check_members(&nemesis.cluster, &history).await);
    let report = Report {
        size,
        seed,
        ops: history.ops.len(),
        txns: history.ops.iter().filter(|o| is_txn(o)).count(),
        unknown: history.ops.iter().filter(|o| o.ret.is_none()).count(),
        refused: history.refused,
        acked: history.acked.len(),
        faults: nemesis.faults.clone(),
        leases: spans.len(),
        holds,
        history: history.ops,
        problems,
    };
    nemesis.cluster.stop().await;
    report
}

/// Once the clients are done (their sessions closed, or expiring on a node that was killed),
/// every lock is released or expired on every member.
async fn locks_left(cluster: &Cluster) -> Vec<String> {
    let idle = || {
        cluster.live().iter().all(|n| {
            let m = n.metrics();
            m.locks_held == 0 && m.lock_waiters == 0
        })
    };
    match crate::common::wait_until(Duration::from_secs(10), || idle().then_some(())).await {
        Some(()) => Vec::new(),
        None => cluster
            .live()
            .iter()
            .map(|n| {
                let m = n.metrics();
                format!(
                    "{}: {} locks held and {} waiters 10 s after the clients stopped",
                    n.name(),
                    m.locks_held,
                    m.lock_waiters
                )
            })
            .collect(),
    }
}

/// After the heal: every member holds every acknowledged write at the index it was
/// answered with, and all members' states are identical.
async fn check_members(cluster: &Cluster, history: &History) -> Vec<String> {
    let mut problems = Vec::new();
    cluster.wait_converged().await;
    let live: Vec<String> = cluster
        .live()
        .iter()
        .map(|h| h.name().to_string())
        .collect();
    let reference = cluster.state(&live[0]).await;
    for name in &live {
        let at: HashMap<u64, (String, Option<Vec<u8>>)> = cluster
            .applied(name)
            .into_iter()
            .filter_map(|e| {
                let change = e.changes.first()?;
                Some((
                    e.index,
                    (
                        change.key.clone(),
                        change.value.as_deref().map(<[u8]>::to_vec),
                    ),
                ))
            })
            .collect();
        for w in &history.acked {
            let expected = (w.key.clone(), Some(w.value.to_le_bytes().to_vec()));
            if at.get(&w.index) != Some(&expected) {
                problems.push(format!(
                    "{name}: acknowledged write {}={} is not at index {}",
                    w.key, w.value, w.index
                ));
            }
        }
        if cluster.state(name).await != reference {
            problems.push(format!("{name}'s state differs from {}'s", live[0]));
        }
    }
    problems
}

/// The longest part of one key's history that has no operation of unknown outcome: its
/// operations called before the first such one. (A failing search must try every place for
/// every unknown outcome; on this prefix it is quick.)
fn is_txn(op: &Op) -> bool {
    matches!(op.action, checker::Action::Txn { .. })
}

/// The longest definite prefix (see [`definite_prefix`]) among single keys (`txn: false`) or
/// transactions' groups (`txn: true`).
fn definite_prefix_of(history: &[Op], txn: bool) -> Vec<Op> {
    let groups: std::collections::HashSet<&str> = history
        .iter()
        .filter(|op| is_txn(op))
        .map(|op| op.key.as_str())
        .collect();
    let ops: Vec<Op> = history
        .iter()
        .filter(|op| groups.contains(op.key.as_str()) == txn)
        .cloned()
        .collect();
    definite_prefix(&ops)
}

/// A torn transaction, appended to the definite prefix of one group: a transaction writes a
/// fresh value to both keys, then another reads the fresh value from one key and nothing
/// from the other. No order explains it.
pub fn inject_torn_read(history: &[Op]) -> Option<Vec<Op>> {
    use checker::{Action, TxnStep};
    let mut history = definite_prefix_of(history, true);
    let group = history.first()?.key.clone();
    let end = history.iter().filter_map(|op| op.ret).max()?;
    let fresh = u64::MAX;
    let txn = |then: Vec<TxnStep>, reads: Vec<Option<u64>>, call: u64| Op {
        key: group.clone(),
        action: Action::Txn {
            compares: vec![],
            then,
            otherwise: vec![],
            outcome: Some((true, reads)),
        },
        call,
        ret: Some(call + 1),
        by: "injected".into(),
    };
    let set = |slot| TxnStep::Set { slot, value: fresh };
    let get = |slot| TxnStep::Get { slot };
    history.push(txn(vec![set(0), set(1)], vec![], end + 1));
    history.push(txn(vec![get(0), get(1)], vec![Some(fresh), None], end + 3));
    Some(history)
}

fn definite_prefix(history: &[Op]) -> Vec<Op> {
    let mut keys: Vec<&str> = history.iter().map(|op| op.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let first_unknown = history
                .iter()
                .filter(|op| op.key == key && op.ret.is_none())
                .map(|op| op.call)
                .min()
                .unwrap_or(u64::MAX);
            history
                .iter()
                .filter(|op| op.key == key && op.call < first_unknown && op.ret.is_some())
                .cloned()
                .collect::<Vec<Op>>()
        })
        .max_by_key(Vec::len)
        .unwrap_or_default()
}

/// A stale read, appended to the definite prefix of one key: it returns the value of an
/// acknowledged write that a later acknowledged write replaced. `None` if the prefix has no
/// two acknowledged writes one after the other.
pub fn inject_stale_read(history: &[Op]) -> Option<Vec<Op>> {
    use checker::Action;
    let mut history = definite_prefix_of(history, false);
    let written = |op: &Op| match op.action {
        Action::Write { value } => Some(value),
        Action::Cas {
            next,
            outcome: Some((true, _)),
            ..
        } => Some(next),
        _ => None,
    };
    let old = history.iter().find_map(|w1| {
        let v1 = written(w1)?;
        let replaced = history
            .iter()
            .any(|w2| written(w2).is_some() && w2.call > w1.ret.unwrap());
        replaced.then_some(v1)
    })?;
    let end = history.iter().filter_map(|op| op.ret).max()?;
    history.push(Op {
        key: history[0].key.clone(),
        action: Action::Read { saw: Some(old) },
        call: end + 1,
        ret: Some(end + 2),
        by: "injected".into(),
    });
    Some(history)
}

/// An acknowledged write that a later read does not see (a lost write), appended to the
/// definite prefix of one key: a write of a fresh value `a`, then an acknowledged write of
/// another fresh value, then a read that still returns `a`. No order explains it.
pub fn inject_lost_write(history: &[Op]) -> Option<Vec<Op>> {
    use checker::Action;
    let mut history = definite_prefix_of(history, false);
    let key = history.first()?.key.clone();
    let end = history.iter().filter_map(|op| op.ret).max()?;
    let (a, lost) = (u64::MAX - 1, u64::MAX);
    let op = |action, call| Op {
        key: key.clone(),
        action,
        call,
        ret: Some(call + 1),
        by: "injected".into(),
    };
    history.push(op(Action::Write { value: a }, end + 1));
    history.push(op(Action::Write { value: lost }, end + 3));
    history.push(op(Action::Read { saw: Some(a) }, end + 5));
    Some(history)
}
