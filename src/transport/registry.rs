//! Who may hold an inbound connection: bounds on connections still in their handshake (per
//! remote address and in all), the names admitted at the handshake (the members), and one
//! live connection per member name, so that a second connection cannot speak for a member
//! whose own connection is alive.
//!
//! Unproven connections never lock members out: when the handshake slots are full, the
//! oldest handshake of the address that holds the most gives way to the newest (of the same
//! address first). Before, 260 raw sockets from five addresses held every slot, and after the
//! leader died no member could connect to elect another. A member dials from its own address
//! once per peer, so a flood from a few addresses only ever evicts itself; one spread over
//! more addresses than the table has slots can still delay members.

use crate::sync::Recover;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Inbound connections in their handshake (TLS, upgrade, proof) from one address. A whole
/// test cluster restarting at once dials from one address: a member's peers number at most
/// a few dozen.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 32;
/// Inbound connections in their handshake in all.
pub const MAX_HANDSHAKES: usize = 64;
/// Connections past their handshake (each speaks for one member; a joining node, which knows
/// no configuration yet, admits any name).
pub const MAX_CONNECTIONS: usize = 256;

pub(super) struct Registry {
    started: Instant,
    /// Connections in their handshake, oldest first.
    handshakes: Mutex<Vec<Handshake>>,
    next_handshake: AtomicU64,
    /// Raft ids admitted at the handshake; empty while this node knows no configuration
    /// (a joining node), which admits any name.
    members: RwLock<HashSet<u64>>,
    live: Mutex<HashMap<u64, Arc<Slot>>>,
    /// A member's connection silent this long may be replaced by a new one (the old one
    /// is half-open: its peer restarted or moved). Live peers talk far more often.
    takeover_after: Duration,
}

struct Handshake {
    seq: u64,
    ip: IpAddr,
    evicted: Arc<Notify>,
}

/// One member's live connection.
pub(super) struct Slot {
    /// Milliseconds since the registry started, when the connection last carried a message.
    heard_ms: AtomicU64,
    /// Wakes the connection when a newer one replaced it.
    pub replaced: Notify,
}

/// A connection's place among those in their handshake; given back on drop.
pub(super) struct Admission<'a> {
    registry: &'a Registry,
    seq: u64,
    evicted: Arc<Notify>,
}

impl Admission<'_> {
    /// Resolves when a newer connection took this one's place: it must close.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }
}

/// A member name held by a connection; given back on drop unless replaced meanwhile.
pub(super) struct Claim<'a> {
    registry: &'a Registry,
    id: u64,
    pub slot: Arc<Slot>,
}

impl Registry {
    pub fn new(takeover_after: Duration) -> Registry {
        Registry {
            started: Instant::now(),
            handshakes: Mutex::new(Vec::new()),
            next_handshake: AtomicU64::new(0),
            members: RwLock::new(HashSet::new()),
            live: Mutex::new(HashMap::new()),
            takeover_after,
        }
    }

    /// Admits a new connection from `ip` to its handshake. When the table is full, the
    /// oldest handshake from the same address, else the oldest of the address holding the
    /// most, is evicted (and told so through [`Admission::evicted`]); the second value says
    /// whether one was.
    pub fn admit(&self, ip: IpAddr) -> (Admission<'_>, bool) {
        let mut handshakes = self.handshakes();
        let from_ip = handshakes.iter().filter(|h| h.ip == ip).count();
        let victim = if from_ip >= MAX_HANDSHAKES_PER_ADDRESS {
            handshakes.iter().position(|h| h.ip == ip)
        } else if handshakes.len() >= MAX_HANDSHAKES {
            // The oldest of the address that holds the most: a member, which dials once per
            // peer, never holds the most while a flood is on.
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            for h in handshakes.iter() {
                *counts.entry(h.ip).or_default() += 1;
            }
            let most = counts.values().copied().max().unwrap_or(0);
            handshakes.iter().position(|h| counts[&h.ip] == most)
        } else {
            None
        };
        if let Some(i) = victim {
            // `notify_one` keeps a permit: the victim sees it even if not waiting yet.
            handshakes.remove(i).evicted.notify_one();
        }
        let seq = self.next_handshake.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        handshakes.push(Handshake {
            seq,
            ip,
            evicted: Arc::clone(&evicted),
        });
        let admission = Admission {
            registry: self,
            seq,
            evicted,
        };
        (admission, victim.is_some())
    }

    fn handshakes(&self) -> std::sync::MutexGuard<'_, Vec<Handshake>> {
        self.handshakes.lock().recover()
    }

    /// Replaces the names admitted at the handshake (the current configuration).
    pub fn set_members(&self, ids: impl IntoIterator<Item = u64>) {
        *self.members.write().recover() = ids.into_iter().collect();
    }

    pub fn is_member(&self, id: u64) -> bool {
        let members = self.members.read().recover();
        members.is_empty() || members.contains(&id)
    }

    /// Makes a new connection the one that speaks for `id`, unless that member's current
    /// connection carried a message recently.
    pub fn claim(&self, id: u64) -> Result<Claim<'_>, String> {
        let now = self.now_ms();
        let mut live = self.live.lock().recover();
        if !live.contains_key(&id) && live.len() >= MAX_CONNECTIONS {
            return Err(format!("{MAX_CONNECTIONS} peers connected"));
        }
        if let Some(old) = live.get(&id) {
            let silent = now.saturating_sub(old.heard_ms.load(Ordering::Relaxed));
            if silent < self.takeover_after.as_millis() as u64 {
                return Err("this peer is already connected".into());
            }
            old.replaced.notify_one();
        }
        let slot = Arc::new(Slot {
            heard_ms: AtomicU64::new(now),
            replaced: Notify::new(),
        });
        live.insert(id, Arc::clone(&slot));
        Ok(Claim {
            registry: self,
            id,
            slot,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

impl Claim<'_> {
    /// The connection carried a message (or a ping) just now.
    pub fn heard(&self) {
        self.slot
            .heard_ms
            .store(self.registry.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut live = self.registry.live.lock().recover();
        if live
            .get(&self.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            live.remove(&self.id);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.registry.handshakes().retain(|h| h.seq != self.seq);
    }
}

/// Logs refusals at most once a minute per peer (its name once it has one, else its
/// address), and at most [`REFUSAL_LOG_BURST`] a minute in all: a hostile peer retrying in
/// a loop, or claiming a new name each time, must not flood the log (9,724 lines in 10 s
/// before the overall bound). The refusals themselves are not limited.
pub(super) struct RefusalLog {
    state: Mutex<RefusalWindow>,
}

#[derive(Default)]
struct RefusalWindow {
    last: HashMap<String, Instant>,
    /// The minute being counted, its lines, and the refusals it did not log.
    started: Option<Instant>,
    logged: usize,
    unlogged: u64,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond, the memory is cleared (and each logs once more).
const REFUSAL_LOG_ADDRESSES: usize = 4096;
/// Refusal lines logged a minute, in all.
pub const REFUSAL_LOG_BURST: usize = 20;

impl RefusalLog {
    pub fn new() -> RefusalLog {
        RefusalLog {
            state: Mutex::new(RefusalWindow::default()),
        }
    }

    /// True when a refusal of `peer` should be logged now.
    pub fn should_log(&self, peer: &str) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().recover();
        if state
            .started
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
        {
            if state.unlogged > 0 {
                tracing::warn!(
                    unlogged = state.unlogged,
                    "{} more peer refusals in the last minute were not logged",
                    state.unlogged
                );
            }
            state.started = Some(now);
            state.logged = 0;
            state.unlogged = 0;
        }
        let last = &mut state.last;
        if last.len() >= REFUSAL_LOG_ADDRESSES {
            last.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
            if last.len() >= REFUSAL_LOG_ADDRESSES {
                last.clear();
            }
        }
        let due =
            !matches!(last.get(peer), Some(at) if now.duration_since(*at) < REFUSAL_LOG_EVERY);
        if !due {
            return false;
        }
        if state.logged >= REFUSAL_LOG_BURST {
            state.unlogged += 1;
            return false;
        }
        state.last.insert(peer.to_string(), now);
        state.logged += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_connection_keeps_its_name_and_a_silent_one_is_replaced() {
        let registry = Registry::new(Duration::from_millis(50));
        let first = registry.claim(7).unwrap();
        assert!(registry.claim(7).is_err(), "live name taken twice");
        std::thread::sleep(Duration::from_millis(60));
        let second = registry.claim(7).expect("a silent connection is replaced");
        // The old connection going away does not free the new one's name.
        drop(first);
        assert!(registry.claim(7).is_err());
        drop(second);
        assert!(registry.claim(7).is_ok());
    }

    #[test]
    fn the_oldest_handshake_gives_way_from_its_own_address_first() {
        let registry = Registry::new(Duration::from_secs(1));
        let flooder: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_HANDSHAKES_PER_ADDRESS)
            .map(|_| registry.admit(flooder))
            .collect();
        assert!(held.iter().all(|(_, evicted)| !evicted));
        let member: IpAddr = "10.0.0.9".parse().unwrap();
        let (_mine, evicted) = registry.admit(member);
        assert!(!evicted, "room for another address");
        let (_newest, evicted) = registry.admit(flooder);
        assert!(evicted, "the flooder's oldest gave way");
        assert!(futures_util::FutureExt::now_or_never(held[0].0.evicted()).is_some());
        assert!(futures_util::FutureExt::now_or_never(held[1].0.evicted()).is_none());
        // Many addresses: the flooder's gives way first, then the oldest of all, and the
        // table stays bounded.
        let others: Vec<_> = (0..MAX_HANDSHAKES * 2)
            .map(|i| registry.admit(IpAddr::from([10, 1, (i / 200) as u8, (i % 200) as u8])))
            .collect();
        assert!(registry.handshakes().len() <= MAX_HANDSHAKES);
        drop((held, others));
        assert_eq!(
            registry.handshakes().len(),
            0,
            "dropped admissions give their place back"
        );
    }

    #[test]
    fn a_members_handshake_outlasts_a_flood_from_five_addresses() {
        let registry = Registry::new(Duration::from_secs(1));
        let (member, _) = registry.admit("10.0.0.9".parse().unwrap());
        let flood: Vec<_> = (0..5 * 52)
            .map(|i| registry.admit(IpAddr::from([10, 0, 1, (i % 5) as u8])))
            .collect();
        assert!(flood.iter().filter(|(_, evicted)| *evicted).count() > 100);
        assert!(
            futures_util::FutureExt::now_or_never(member.evicted()).is_none(),
            "the member kept its place"
        );
        assert!(registry.handshakes().len() <= MAX_HANDSHAKES);
    }

    #[test]
    fn an_empty_configuration_admits_any_name() {
        let registry = Registry::new(Duration::from_secs(1));
        assert!(registry.is_member(3));
        registry.set_members([1, 2]);
        assert!(registry.is_member(1) && !registry.is_member(3));
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_peer() {
        let log = RefusalLog::new();
        assert!(log.should_log("10.0.0.1"));
        assert!(!log.should_log("10.0.0.1"));
        assert!(log.should_log("10.0.0.2"));
        assert!(log.should_log("n2 at 10.0.0.1"));
        // A peer that claims a new name each time is bounded overall.
        let logged = (0..1000)
            .filter(|i| log.should_log(&format!("ghost{i} at 10.0.0.3")))
            .count();
        assert_eq!(logged, REFUSAL_LOG_BURST - 3);
    }
}
