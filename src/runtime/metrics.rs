//! A node's counters for monitoring: proposals and their latency (counted where they enter,
//! on the handle), elections and leader changes (counted from the events the driver emits),
//! bytes (from the transport's counters). Everything is an atomic: reading a snapshot never
//! waits on the driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::events::{Event, Role};
use crate::transport::TransportStats;

/// Upper bounds (seconds) of the proposal latency histogram's buckets; `+Inf` follows.
pub const PROPOSAL_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The live counters of one node.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    proposals: AtomicU64,
    proposals_failed: AtomicU64,
    elections: AtomicU64,
    leader_changes: AtomicU64,
    /// Proposals refused at once for overload (`ERR_OVERLOADED`).
    overloaded: AtomicU64,
    /// Proposals that took at most each bucket's bound (not cumulative here), then `+Inf`.
    buckets: [AtomicU64; PROPOSAL_BUCKETS.len() + 1],
    duration_micros: AtomicU64,
    /// Fsyncs of the log, as the store last reported them.
    log_syncs: AtomicU64,
    /// Session expiries applied, as the core last reported them.
    sessions_expired: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    pub proposals: u64,
    pub proposals_failed: u64,
    pub elections: u64,
    pub leader_changes: u64,
    /// Cumulative counts per bound of [`PROPOSAL_BUCKETS`], then the total (`+Inf`).
    pub proposal_buckets: Vec<u64>,
    pub proposal_seconds_sum: f64,
    /// Bytes sent to and received from peers.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Proposals refused at once for overload.
    pub proposals_overloaded: u64,
    /// Inbound frames refused for their size, number of messages or failed authentication.
    pub frames_refused: u64,
    /// Fsyncs of the log (a durable node; 0 in memory): with the entries written, how well
    /// writes are grouped.
    pub log_syncs: u64,
    /// Sessions in the cluster, locks held and sessions waiting for locks (as this node
    /// applied them), and the session expiries it applied since it started.
    pub sessions: u64,
    pub locks_held: u64,
    pub lock_waiters: u64,
    pub sessions_expired: u64,
}

impl NodeMetrics {
    /// A proposal through this node ended after `elapsed`, committed or not.
    pub fn observe_proposal(&self, elapsed: Duration, outcome: Result<(), &crate::Error>) {
        if let Err(crate::Error::Overloaded(_)) = outcome {
            self.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        let ok = outcome.is_ok();
        self.proposals.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.proposals_failed.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        let slot = PROPOSAL_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(PROPOSAL_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts the elections this node started and the leader changes it saw.
    pub fn observe_events(&self, events: &[Event]) {
        for event in events {
            match event {
                Event::RoleChanged {
                    role: Role::Candidate,
                    ..
                } => {
                    self.elections.fetch_add(1, Ordering::Relaxed);
                }
                Event::LeaderChanged { .. } => {
                    self.leader_changes.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    /// The counters now, with the bytes of `transport`.
    pub fn snapshot(&self, transport: &TransportStats) -> MetricsSnapshot {
        let mut total = 0;
        let proposal_buckets = self
            .buckets
            .iter()
            .map(|count| {
                total += count.load(Ordering::Relaxed);
                total
            })
            .collect();
        MetricsSnapshot {
            proposals: self.proposals.load(Ordering::Relaxed),
            proposals_failed: self.proposals_failed.load(Ordering::Relaxed),
            elections: self.elections.load(Ordering::Relaxed),
            leader_changes: self.leader_changes.load(Ordering::Relaxed),
            proposal_buckets,
            proposal_seconds_sum: self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6,
            bytes_sent: transport.bytes_sent.load(Ordering::Relaxed),
            bytes_received: transport.bytes_received.load(Ordering::Relaxed),
            proposals_overloaded: self.overloaded.load(Ordering::Relaxed),
            frames_refused: transport.frames_refused.load(Ordering::Relaxed),
            log_syncs: self.log_syncs.load(Ordering::Relaxed),
            sessions: 0,
            locks_held: 0,
            lock_waiters: 0,
            sessions_expired: self.sessions_expired.load(Ordering::Relaxed),
        }
    }

    /// Records the core's count of session expiries (read on the driver after each turn).
    pub fn observe_sessions_expired(&self, expired: u64) {
        self.sessions_expired.store(expired, Ordering::Relaxed);
    }

    /// Records the store's count of log fsyncs (read on the driver after each turn).
    pub fn observe_log_syncs(&self, syncs: u64) {
        self.log_syncs.store(syncs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_ends_with_the_total() {
        let m = NodeMetrics::default();
        m.observe_proposal(Duration::from_micros(300), Ok(()));
        m.observe_proposal(Duration::from_millis(3), Ok(()));
        m.observe_proposal(Duration::from_secs(30), Err(&crate::Error::NoLeader));
        let s = m.snapshot(&TransportStats::default());
        assert_eq!((s.proposals, s.proposals_failed), (3, 1));
        assert_eq!(s.proposal_buckets.len(), PROPOSAL_BUCKETS.len() + 1);
        assert_eq!(s.proposal_buckets[0], 1); // <= 0.5 ms
        assert_eq!(s.proposal_buckets[3], 2); // <= 5 ms
        assert_eq!(s.proposal_buckets[13], 2); // <= 10 s
        assert_eq!(s.proposal_buckets[14], 3); // +Inf
        assert!((s.proposal_seconds_sum - 30.0033).abs() < 1e-9);
    }
}
