//! A switch that drops traffic to and from chosen peers, on the real transport, at run time.
//! Test clusters build partitions and isolation out of it.

use crate::sync::Recover;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

/// The set of peers whose traffic this node drops, both ways.
#[derive(Debug, Default)]
pub struct FaultFilter {
    blocked: RwLock<HashSet<String>>,
    /// Snapshots still to lose on their way to a peer (a connection that broke mid-way).
    lost_snapshots: Mutex<HashMap<String, u32>>,
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
        self.lost().clear();
    }

    /// Loses the next `count` snapshots sent to `peer`, as a connection that breaks while a
    /// snapshot travels would (heartbeats still get through).
    pub fn lose_snapshots(&self, peer: &str, count: u32) {
        self.lost().insert(peer.to_string(), count);
    }

    /// True when a snapshot to `peer` must be lost now (counts it).
    pub fn loses_snapshot(&self, peer: &str) -> bool {
        let mut lost = self.lost();
        match lost.get_mut(peer) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn lost(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.lost_snapshots.lock().recover()
    }

    /// True when traffic with `peer` is dropped.
    pub fn is_blocked(&self, peer: &str) -> bool {
        let blocked = self.blocked.read().recover();
        !blocked.is_empty() && blocked.contains(peer)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        self.blocked.write().recover()
    }
}
