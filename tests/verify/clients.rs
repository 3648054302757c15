//! Clients of a verification run: each picks a live node and a key at random and reads
//! (linearizable or lease), writes or compare-and-sets, recording what it asked and saw.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftline::{Consistency, NodeHandle, ReadOptions, WriteOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::checker::{Action, Op};
use super::history::{outcome_of, Acked, Clock, Outcome, Shared};

/// Deadline of each client operation: short, so that operations cut off by a fault end
/// (with an unknown outcome) while the run goes on.
const OP_TIMEOUT: Duration = Duration::from_millis(1500);

/// Values are unique per write: the client's id in the high bits.
fn value(client: u64, n: u64) -> u64 {
    (client << 32) | n
}

fn decode(bytes: Option<impl AsRef<[u8]>>) -> Option<u64> {
    bytes.map(|b| u64::from_le_bytes(b.as_ref().try_into().expect("8-byte values")))
}

/// Runs one client until `stop`.
pub async fn run(
    client: u64,
    seed: u64,
    nodes: Arc<Mutex<Vec<NodeHandle>>>,
    keys: Vec<String>,
    clock: Arc<Clock>,
    history: Shared,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let write_options = WriteOptions {
        timeout: OP_TIMEOUT,
        forward: true,
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let node = {
            let live = nodes.lock().unwrap();
            live[rng.gen_range(0..live.len())].clone()
        };
        let key = keys[rng.gen_range(0..keys.len())].clone();
        n += 1;
        let roll = rng.gen_range(0..10);
        let by = format!("{}{}", node.name(), if roll == 0 { " lease" } else { "" });
        let call = clock.tick();
        let (action, outcome, index) = if roll < 4 {
            let consistency = if roll == 0 {
                Consistency::Lease
            } else {
                Consistency::Linearizable
            };
            let options = ReadOptions {
                consistency,
                timeout: OP_TIMEOUT,
            };
            match node.get(&key, options).await {
                Ok(v) => (Action::Read { saw: decode(v) }, Outcome::Done, None),
                // A failed read changed nothing: leave it out.
                Err(_) => (Action::Read { saw: None }, Outcome::Refused, None),
            }
        } else if roll < 8 {
            let v = value(client, n);
            let action = Action::Write { value: v };
            match node
                .set(&key, v.to_le_bytes().to_vec(), write_options)
                .await
            {
                Ok(w) => (action, Outcome::Done, Some(w.index)),
                Err(e) => (action, outcome_of(&e), None),
            }
        } else {
            // Expect what a fresh local read says: sometimes right, sometimes stale.
            let expected = decode(node.get_local(&key));
            let next = value(client, n);
            let exp_bytes = expected.map(|v| v.to_le_bytes().to_vec());
            match node
                .cas(
                    &key,
                    exp_bytes,
                    Some(next.to_le_bytes().to_vec()),
                    write_options,
                )
                .await
            {
                Ok(w) => {
                    let current = if w.ok { Some(next) } else { decode(w.value) };
                    let action = Action::Cas {
                        expected,
                        next,
                        outcome: Some((w.ok, current)),
                    };
                    (action, Outcome::Done, w.ok.then_some(w.index))
                }
                Err(e) => {
                    let action = Action::Cas {
                        expected,
                        next,
                        outcome: None,
                    };
                    (action, outcome_of(&e), None)
                }
            }
        };
        let ret = clock.tick();
        let written = match &action {
            Action::Write { value } => Some(*value),
            Action::Cas { next, .. } => Some(*next),
            Action::Read { .. } | Action::Txn { .. } => None,
        };
        let op = Op {
            key,
            action,
            call,
            ret: Some(ret),
            by,
        };
        record(&history, op, outcome, index.zip(written));
        // Bound the history (and the checker's work): a few hundred operations per second.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..4))).await;
    }
}

/// Adds one operation to the history (refused ones are only counted).
fn record(history: &Shared, mut op: Op, outcome: Outcome, acked: Option<(u64, u64)>) {
    let mut h = history.lock().unwrap();
    match outcome {
        Outcome::Refused => {
            h.refused += 1;
            return;
        }
        Outcome::Done => {}
        Outcome::Unknown => op.ret = None,
    }
    if let Some((index, value)) = acked {
        let key = op.key.clone();
        h.acked.push(Acked { key, value, index });
    }
    h.ops.push(op);
}
