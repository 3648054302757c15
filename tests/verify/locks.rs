//! Lock clients of a verification run, and the lock checker. Each client opens a session on a
//! live node, asks for one of a few locks, holds what it is granted for a moment while its
//! session may be counted on, and releases it. A hold is recorded as its validity interval:
//! from when the client saw the grant to when it released the lock, or (lost) to the last
//! deadline the engine gave it (`NodeHandle::session_valid_for`, the instant the holder stops
//! counting on its session). Afterwards: no two holds of one lock overlap, a lock's fences
//! strictly increase in the order of its holds, no fence is given twice, and once every
//! client is done, every lock is released or expired.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftline::{LockReply, NodeHandle, WriteOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The locks the clients contend for.
pub const NAMES: [&str; 2] = ["lock-a", "lock-b"];
/// The clients' session TTL: ten heartbeats of the fast timing at least.
const TTL: Duration = Duration::from_millis(300);
const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// One lock held by one session, as its holder could count on it.
#[derive(Debug, Clone)]
pub struct Hold {
    pub name: String,
    pub session: u64,
    pub fence: u64,
    pub from: Instant,
    pub to: Instant,
    pub by: String,
}

pub type Holds = Arc<Mutex<Vec<Hold>>>;

fn options() -> WriteOptions {
    WriteOptions {
        timeout: OP_TIMEOUT,
        forward: true,
    }
}

/// Runs one lock client until `stop`; closes its sessions as it goes.
pub async fn run(
    seed: u64,
    nodes: Arc<Mutex<Vec<NodeHandle>>>,
    holds: Holds,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let node = {
            let live = nodes.lock().unwrap();
            live[rng.gen_range(0..live.len())].clone()
        };
        let Ok(session) = node.open_session(TTL, options()).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        // A few locks in this session, one after the other, while it lasts.
        for _ in 0..rng.gen_range(1..4) {
            let name = NAMES[rng.gen_range(0..NAMES.len())];
            if !hold_once(&node, session, name, &mut rng, &holds).await {
                break;
            }
        }
        let _ = node.close_session(session, options()).await;
    }
}

/// Asks for `name` until granted (or the session is lost), holds it a moment, releases it.
/// Returns whether the session is still good.
async fn hold_once(
    node: &NodeHandle,
    session: u64,
    name: &str,
    rng: &mut StdRng,
    holds: &Holds,
) -> bool {
    let give_up = Instant::now() + Duration::from_secs(2);
    let fence = loop {
        if node.session_valid_for(session).is_none() || Instant::now() > give_up {
            let _ = node.unlock(name, session, options()).await;
            return false;
        }
        // Asking again is idempotent: it answers the grant once it is made.
        match node.lock(name, session, true, options()).await {
            Ok(LockReply::Granted { fence }) => break fence,
            Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let from = Instant::now();
    let Some(left) = node.session_valid_for(session) else {
        // Granted, but the session cannot be counted on any more: no hold.
        return false;
    };
    let mut until = from + left;
    // Mostly short holds; a quarter longer than the TTL, so that faults strike holders that
    // must notice they can no longer count on their session.
    let hold_for = Duration::from_millis(if rng.gen_bool(0.25) {
        rng.gen_range(200..900)
    } else {
        rng.gen_range(0..80)
    });
    let mut lost = false;
    while from.elapsed() < hold_for {
        tokio::time::sleep(Duration::from_millis(5)).await;
        match node.session_valid_for(session) {
            Some(left) => until = Instant::now() + left,
            None => {
                lost = true;
                break;
            }
        }
    }
    let to = if lost {
        until
    } else {
        Instant::now().min(until)
    };
    holds.lock().unwrap().push(Hold {
        name: name.to_string(),
        session,
        fence,
        from,
        to,
        by: node.name().to_string(),
    });
    if !lost {
        let _ = node.unlock(name, session, options()).await;
    }
    !lost
}

/// Overlapping holds of one lock, fences out of order, and fences given twice.
pub fn check(holds: &[Hold]) -> Vec<String> {
    let mut problems = Vec::new();
    for name in NAMES {
        let mut mine: Vec<&Hold> = holds.iter().filter(|h| h.name == name).collect();
        mine.sort_by_key(|h| h.from);
        for (i, a) in mine.iter().enumerate() {
            for b in &mine[i + 1..] {
                if b.from >= a.to {
                    break;
                }
                if a.session != b.session {
                    problems.push(format!(
                        "{name}: session {} (fence {}, on {}) held it until {:?} after session {} \
                         (fence {}, on {}) was granted it",
                        a.session,
                        a.fence,
                        a.by,
                        a.to - b.from,
                        b.session,
                        b.fence,
                        b.by
                    ));
                }
            }
        }
        for pair in mine.windows(2) {
            if pair[1].fence <= pair[0].fence && pair[1].session != pair[0].session {
                problems.push(format!(
                    "{name}: fence {} was granted after fence {}",
                    pair[1].fence, pair[0].fence
                ));
            }
        }
    }
    let mut fences: Vec<(u64, &str, u64)> = holds
        .iter()
        .map(|h| (h.fence, h.name.as_str(), h.session))
        .collect();
    fences.sort();
    fences.dedup();
    for pair in fences.windows(2) {
        if pair[0].0 == pair[1].0 {
            problems.push(format!(
                "fence {} was given twice: {:?} and {:?}",
                pair[0].0, pair[0], pair[1]
            ));
        }
    }
    problems
}

/// `holds` with an overlap injected: a copy of a hold, by another session, granted halfway
/// through it. `None` without a hold to copy.
pub fn inject_overlap(holds: &[Hold]) -> Option<Vec<Hold>> {
    let mut holds = holds.to_vec();
    let victim = holds.iter().find(|h| h.to > h.from)?.clone();
    holds.push(Hold {
        session: victim.session + 1_000_000,
        fence: victim.fence + 1_000_000,
        from: victim.from + (victim.to - victim.from) / 2,
        to: victim.to + Duration::from_millis(1),
        by: "injected".into(),
        ..victim
    });
    Some(holds)
}
