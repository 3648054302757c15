//! A switch that drops traffic to and from chosen peers, on the real transport, at run time.
//! Test clusters build partitions and isolation out of it.

use std::collections::HashSet;
use std::sync::RwLock;

/// The set of peers whose traffic this node drops, both ways.
#[derive(Debug, Default)]
pub struct FaultFilter {
    blocked: RwLock<HashSet<String>>,
}

impl FaultFilter {
    /// Drops every message to and from `peer` from now on.
    pub fn block(&self, peer: &str) {
        self.write().insert(peer.to_string());
    }

    /// Lets `peer`'s traffic through again.
    pub fn unblock(&self, peer: &str) {
        self.write().remove(peer);
    }

    /// Lets all traffic through.
    pub fn clear(&self) {
        self.write().clear();
    }

    /// True when traffic with `peer` is dropped.
    pub fn is_blocked(&self, peer: &str) -> bool {
        let blocked = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        !blocked.is_empty() && blocked.contains(peer)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        self.blocked.write().unwrap_or_else(|p| p.into_inner())
    }
}
