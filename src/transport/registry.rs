//! Who may hold an inbound connection: bounds on connections per remote address and in
//! all, the names admitted at the handshake (the members), and one live connection per
//! member name, so that a second connection cannot speak for a member whose own
//! connection is alive.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Inbound connections (open or in their handshake) accepted from one address. A node has
/// one per peer; a test machine runs whole clusters on one address.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Inbound connections accepted in all.
pub const MAX_CONNECTIONS: usize = 256;

pub(super) struct Registry {
    started: Instant,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Raft ids admitted at the handshake; empty while this node knows no configuration
    /// (a joining node), which admits any name.
    members: RwLock<HashSet<u64>>,
    live: Mutex<HashMap<u64, Arc<Slot>>>,
    /// A member's connection silent this long may be replaced by a new one (the old one
    /// is half-open: its peer restarted or moved). Live peers talk far more often.
    takeover_after: Duration,
}

/// One member's live connection.
pub(super) struct Slot {
    /// Milliseconds since the registry started, when the connection last carried a message.
    heard_ms: AtomicU64,
    /// Wakes the connection when a newer one replaced it.
    pub replaced: Notify,
}

/// An accepted connection's place in the address count; given back on drop.
pub(super) struct Admission<'a> {
    registry: &'a Registry,
    ip: IpAddr,
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
            open: Mutex::new(HashMap::new()),
            members: RwLock::new(HashSet::new()),
            live: Mutex::new(HashMap::new()),
            takeover_after,
        }
    }

    /// Counts a new connection from `ip`, or refuses it when too many are open.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission<'_>, String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let from_ip = open.get(&ip).copied().unwrap_or(0);
        if total >= MAX_CONNECTIONS {
            return Err(format!("{MAX_CONNECTIONS} connections open"));
        }
        if from_ip >= MAX_CONNECTIONS_PER_ADDRESS {
            return Err(format!(
                "{MAX_CONNECTIONS_PER_ADDRESS} connections open from this address"
            ));
        }
        *open.entry(ip).or_default() += 1;
        Ok(Admission { registry: self, ip })
    }

    /// Replaces the names admitted at the handshake (the current configuration).
    pub fn set_members(&self, ids: impl IntoIterator<Item = u64>) {
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = ids.into_iter().collect();
    }

    pub fn is_member(&self, id: u64) -> bool {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        members.is_empty() || members.contains(&id)
    }

    /// Makes a new connection the one that speaks for `id`, unless that member's current
    /// connection carried a message recently.
    pub fn claim(&self, id: u64) -> Result<Claim<'_>, String> {
        let now = self.now_ms();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut live = self.registry.live.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut open = self.registry.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Logs refusals at most once a minute per peer (its name once it has one, else its
/// address): a hostile peer retrying in a loop must not flood the log (the refusals
/// themselves are not limited).
pub(super) struct RefusalLog {
    last: Mutex<HashMap<String, Instant>>,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond, the memory is cleared (and each logs once more).
const REFUSAL_LOG_ADDRESSES: usize = 4096;

impl RefusalLog {
    pub fn new() -> RefusalLog {
        RefusalLog {
            last: Mutex::new(HashMap::new()),
        }
    }

    /// True when a refusal of `peer` should be logged now.
    pub fn should_log(&self, peer: &str) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= REFUSAL_LOG_ADDRESSES {
            last.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
            if last.len() >= REFUSAL_LOG_ADDRESSES {
                last.clear();
            }
        }
        match last.get(peer) {
            Some(at) if now.duration_since(*at) < REFUSAL_LOG_EVERY => false,
            _ => {
                last.insert(peer.to_string(), now);
                true
            }
        }
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
    fn connections_are_bounded_per_address() {
        let registry = Registry::new(Duration::from_secs(1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_CONNECTIONS_PER_ADDRESS)
            .map(|_| registry.admit(ip).unwrap())
            .collect();
        assert!(registry.admit(ip).is_err());
        assert!(registry.admit("10.0.0.2".parse().unwrap()).is_ok());
        drop(held);
        assert!(registry.admit(ip).is_ok());
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
    }
}
