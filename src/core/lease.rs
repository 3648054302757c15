//! The leader lease behind `isLeader`, lease reads and `runWhileLeader`.
//!
//! Every heartbeat the leader sends a ReadIndex probe. Once a quorum has acknowledged a probe
//! sent at `t`, no other node can win an election before `t + election timeout`: with
//! check-quorum, a voter that heard from the leader ignores candidates for one election
//! timeout. The lease ends a margin (two ticks) before that. Time is the leader's real clock,
//! and the lease is published as the instant it ends, checked when read: a driver stalled in
//! fsync cannot stretch it.
//!
//! There is no lease:
//! - without check-quorum (voters then grant votes at once, whatever they heard);
//! - while a leadership transfer is pending (the transferee's election bypasses leases),
//!   and for probes sent before a transfer ended plus two election timeouts (a delayed
//!   TimeoutNow may still start such an election).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) struct Lease {
    /// Length of a confirmed lease.
    length: Duration,
    /// False without check-quorum: never granted.
    enabled: bool,
    /// How long after a transfer ended its election may still happen.
    transfer_guard: Duration,
    /// Probes in flight: sequence number -> when it was sent.
    probes: BTreeMap<u64, Instant>,
    until: Option<Instant>,
    /// Probes sent before this instant prove nothing.
    fence: Option<Instant>,
    /// A leadership transfer is pending.
    transferring: bool,
    /// What the last lease event said.
    pub reported: bool,
}

impl Lease {
    pub fn new(length: Duration, election: Duration, enabled: bool) -> Self {
        Lease {
            length,
            enabled,
            transfer_guard: election * 2,
            probes: BTreeMap::new(),
            until: None,
            fence: None,
            transferring: false,
            reported: false,
        }
    }

    /// Records a probe sent now; false when probing is pointless (no lease can result).
    pub fn probe(&mut self, seq: u64, now: Instant) -> bool {
        if !self.enabled || self.transferring {
            return false;
        }
        let length = self.length;
        self.probes
            .retain(|_, sent| now.duration_since(*sent) < length);
        self.probes.insert(seq, now);
        true
    }

    /// True when `seq` is a probe in flight.
    pub fn is_probe(&self, seq: u64) -> bool {
        self.probes.contains_key(&seq)
    }

    /// A quorum acknowledged probe `seq`: the lease runs from when it was sent.
    pub fn confirm(&mut self, seq: u64) {
        let Some(&sent) = self.probes.get(&seq) else {
            return;
        };
        self.probes = self.probes.split_off(&(seq + 1));
        if self.transferring || self.fence.is_some_and(|fence| sent < fence) {
            return;
        }
        let until = sent + self.length;
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
    }

    /// Ends the lease at once (role lost).
    pub fn revoke(&mut self) {
        self.until = None;
        self.probes.clear();
    }

    /// Follows the transfer state of the leader: `pending` while a transferee is set.
    pub fn set_transferring(&mut self, pending: bool, now: Instant) {
        if pending && !self.transferring {
            self.revoke();
        }
        if !pending && self.transferring {
            self.fence = Some(now + self.transfer_guard);
        }
        self.transferring = pending;
    }

    /// When the lease ends, if one is held now by a node in the leader role.
    pub fn until(&self, leader: bool, now: Instant) -> Option<Instant> {
        self.until
            .filter(|until| leader && !self.transferring && now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_confirmed_probe_grants_a_lease_that_ends_on_time() {
        let mut lease = Lease::new(100 * MS, 150 * MS, true);
        let t0 = Instant::now();
        assert!(lease.probe(1, t0));
        assert_eq!(lease.until(true, t0), None, "not before a quorum answered");
        lease.confirm(1);
        assert_eq!(lease.until(true, t0), Some(t0 + 100 * MS));
        assert_eq!(lease.until(false, t0), None, "only a leader holds it");
        assert_eq!(
            lease.until(true, t0 + 100 * MS),
            None,
            "ends at its instant"
        );
    }

    #[test]
    fn no_lease_without_check_quorum() {
        let mut lease = Lease::new(100 * MS, 150 * MS, false);
        let t0 = Instant::now();
        assert!(!lease.probe(1, t0));
        lease.confirm(1);
        assert_eq!(lease.until(true, t0), None);
    }

    #[test]
    fn a_transfer_revokes_the_lease_and_fences_older_probes() {
        let mut lease = Lease::new(100 * MS, 150 * MS, true);
        let t0 = Instant::now();
        lease.probe(1, t0);
        lease.confirm(1);
        lease.probe(2, t0);
        lease.set_transferring(true, t0);
        assert_eq!(
            lease.until(true, t0),
            None,
            "revoked when the transfer starts"
        );
        lease.confirm(2);
        assert_eq!(
            lease.until(true, t0),
            None,
            "no confirmation during a transfer"
        );
        assert!(!lease.probe(3, t0), "no probes during a transfer");
        lease.set_transferring(false, t0 + 10 * MS);
        lease.probe(4, t0 + 20 * MS);
        lease.confirm(4);
        assert_eq!(
            lease.until(true, t0 + 20 * MS),
            None,
            "probes inside the guard after an aborted transfer prove nothing"
        );
        let later = t0 + 400 * MS;
        lease.probe(5, later);
        lease.confirm(5);
        assert_eq!(lease.until(true, later), Some(later + 100 * MS));
    }
}
