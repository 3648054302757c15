//! Transaction clients of a verification run: each picks a live node and a group of two keys
//! (`<group>/a`, `<group>/b`) at random and runs a transaction on it: compare one key with
//! what a local read says (sometimes stale), then write both, or read one and write the
//! other, or delete one and read the other; the other branch reads both. The checker sees
//! each group as one object of two registers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftline::{Command, Compare, NodeHandle, Txn, TxnOp, TxnOpResult, WriteOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::checker::{Action, Op, TxnStep, Value};
use super::history::{outcome_of, Clock, Outcome, Shared};

const OP_TIMEOUT: Duration = Duration::from_millis(1500);

const SLOT_KEYS: [&str; 2] = ["a", "b"];

fn decode(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("8-byte values"))
}

/// The engine's form of a step on `group`.
fn engine_op(group: &str, step: &TxnStep) -> TxnOp {
    let key = |slot: usize| format!("{group}/{}", SLOT_KEYS[slot]);
    match *step {
        TxnStep::Set { slot, value } => TxnOp::Set {
            key: key(slot),
            value: value.to_le_bytes().to_vec().into(),
        },
        TxnStep::Delete { slot } => TxnOp::Delete { key: key(slot) },
        TxnStep::Get { slot } => TxnOp::Get { key: key(slot) },
    }
}

/// A random `then` branch writing the fresh value `v`.
fn branch(rng: &mut StdRng, v: u64) -> Vec<TxnStep> {
    use TxnStep::{Delete, Get, Set};
    let (x, y) = if rng.gen_bool(0.5) { (0, 1) } else { (1, 0) };
    match rng.gen_range(0..3) {
        0 => vec![Set { slot: x, value: v }, Set { slot: y, value: v }],
        1 => vec![Get { slot: x }, Set { slot: y, value: v }],
        _ => vec![Delete { slot: x }, Get { slot: y }],
    }
}

/// Runs one transaction client until `stop`.
pub async fn run(
    client: u64,
    seed: u64,
    nodes: Arc<Mutex<Vec<NodeHandle>>>,
    groups: Vec<String>,
    clock: Arc<Clock>,
    history: Shared,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let options = WriteOptions {
        timeout: OP_TIMEOUT,
        forward: true,
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let node = {
            let live = nodes.lock().unwrap();
            live[rng.gen_range(0..live.len())].clone()
        };
        let group = groups[rng.gen_range(0..groups.len())].clone();
        n += 1;
        let v = (client << 40) | n;
        // Compare with what this node has applied: right or stale.
        let compares: Vec<(usize, Value)> = match rng.gen_range(0..3) {
            0 => vec![],
            slot => {
                let slot = slot - 1;
                let local = node.get_local(&format!("{group}/{}", SLOT_KEYS[slot]));
                vec![(slot, local.as_deref().map(decode))]
            }
        };
        let then = branch(&mut rng, v);
        let otherwise = vec![TxnStep::Get { slot: 0 }, TxnStep::Get { slot: 1 }];
        let txn = Txn {
            compares: compares
                .iter()
                .map(|&(slot, value)| {
                    let key = format!("{group}/{}", SLOT_KEYS[slot]);
                    match value {
                        None => Compare::Exists { key, exists: false },
                        Some(v) => Compare::Value {
                            key,
                            value: v.to_le_bytes().to_vec().into(),
                        },
                    }
                })
                .collect(),
            then: then.iter().map(|s| engine_op(&group, s)).collect(),
            otherwise: otherwise.iter().map(|s| engine_op(&group, s)).collect(),
        };
        let call = clock.tick();
        let answer = node.write(Command::Txn(txn), options).await;
        let ret = clock.tick();
        let (outcome, seen) = match answer {
            Ok(w) => {
                let txn = w.txn.expect("a transaction's outcome");
                let reads = txn
                    .results
                    .iter()
                    .filter_map(|r| match r {
                        TxnOpResult::Read(record) => {
                            Some(record.as_ref().map(|r| decode(&r.value)))
                        }
                        TxnOpResult::Written { .. } => None,
                    })
                    .collect();
                (Outcome::Done, Some((txn.succeeded, reads)))
            }
            Err(e) => (outcome_of(&e), None),
        };
        let op = Op {
            key: group,
            action: Action::Txn {
                compares,
                then,
                otherwise,
                outcome: seen,
            },
            call,
            ret: Some(ret),
            by: node.name().to_string(),
        };
        {
            let mut h = history.lock().unwrap();
            match outcome {
                Outcome::Refused => h.refused += 1,
                Outcome::Done => h.ops.push(op),
                Outcome::Unknown => h.ops.push(Op { ret: None, ..op }),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..4))).await;
    }
}
