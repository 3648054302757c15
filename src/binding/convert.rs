//! Engine values in the shapes JS receives: status, members, write results, metrics.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::{Status as EngineStatus, WriteOutcome};

#[napi(object)]
pub struct NativeStatus {
    pub id: String,
    pub role: String,
    pub term: f64,
    pub leader_id: Option<String>,
    /// Computed when read: the lease may have run out since the status was published.
    pub is_leader: bool,
    /// How long the lease still runs (0 when none is held).
    pub lease_remaining_ms: f64,
    /// This node was removed from the cluster.
    pub removed: bool,
    pub commit_index: f64,
    pub applied_index: f64,
    pub last_index: f64,
    pub snapshot_index: f64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// Where the leader serves HTTP, as it advertised (null: no leader, or none advertised).
    pub leader_http_url: Option<String>,
}

impl From<EngineStatus> for NativeStatus {
    fn from(s: EngineStatus) -> Self {
        let lease = s.lease_remaining();
        NativeStatus {
            id: s.name,
            role: s.role.as_str().to_string(),
            term: s.term as f64,
            leader_id: s.leader,
            is_leader: lease.is_some(),
            lease_remaining_ms: lease.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            removed: s.removed,
            commit_index: s.commit_index as f64,
            applied_index: s.applied_index as f64,
            last_index: s.last_index as f64,
            snapshot_index: s.snapshot_index as f64,
            voters: s.voters.to_vec(),
            learners: s.learners.to_vec(),
            leader_http_url: None,
        }
    }
}

/// A member as this node sees it.
#[napi(object)]
pub struct NativeMember {
    pub id: String,
    /// Where it listens, as far as this node knows.
    pub url: Option<String>,
    pub voter: bool,
    pub health: String,
    pub match_index: Option<f64>,
    pub last_contact_ms: Option<f64>,
    /// Where its application serves HTTP, as it advertised to this node.
    pub http_url: Option<String>,
}

impl From<crate::MemberView> for NativeMember {
    fn from(m: crate::MemberView) -> Self {
        NativeMember {
            id: m.name,
            url: m.url,
            voter: m.voter,
            health: m.health.as_str().to_string(),
            match_index: m.match_index.map(|i| i as f64),
            last_contact_ms: m.last_contact.map(|d| d.as_secs_f64() * 1000.0),
            http_url: None,
        }
    }
}

#[napi(object)]
pub struct NativeWriteResult {
    pub index: f64,
    pub term: f64,
    /// `cas`: matched; `delete`: the key existed; `incr`: the value was a number.
    pub ok: bool,
    /// `cas`/`incr`: the value after it; `set`/`delete`: the previous value.
    pub value: Option<Buffer>,
    /// A retry of a keyed write: the first one's result, and nothing applied now.
    pub duplicate: bool,
}

impl From<WriteOutcome> for NativeWriteResult {
    fn from(o: WriteOutcome) -> Self {
        NativeWriteResult {
            index: o.index as f64,
            term: o.term as f64,
            ok: o.ok,
            value: o.value.map(|v| Buffer::from(v.to_vec())),
            duplicate: o.duplicate,
        }
    }
}

/// A node's counters (see `crate::runtime::metrics`); the JS layer renders them.
#[napi(object)]
pub struct NativeMetrics {
    pub proposals: f64,
    pub proposals_failed: f64,
    pub elections: f64,
    pub leader_changes: f64,
    pub bytes_sent: f64,
    pub bytes_received: f64,
    pub proposals_overloaded: f64,
    pub frames_refused: f64,
    pub log_syncs: f64,
    pub sessions: f64,
    pub locks_held: f64,
    pub lock_waiters: f64,
    pub sessions_expired: f64,
    /// Upper bounds in seconds; the cumulative counts have one more entry (`+Inf`).
    pub proposal_bucket_bounds: Vec<f64>,
    pub proposal_buckets: Vec<f64>,
    pub proposal_seconds_sum: f64,
}

impl NativeMetrics {
    pub fn new(m: crate::runtime::metrics::MetricsSnapshot) -> Self {
        NativeMetrics {
            proposals: m.proposals as f64,
            proposals_failed: m.proposals_failed as f64,
            elections: m.elections as f64,
            leader_changes: m.leader_changes as f64,
            bytes_sent: m.bytes_sent as f64,
            bytes_received: m.bytes_received as f64,
            proposals_overloaded: m.proposals_overloaded as f64,
            frames_refused: m.frames_refused as f64,
            log_syncs: m.log_syncs as f64,
            sessions: m.sessions as f64,
            locks_held: m.locks_held as f64,
            lock_waiters: m.lock_waiters as f64,
            sessions_expired: m.sessions_expired as f64,
            proposal_bucket_bounds: crate::runtime::metrics::PROPOSAL_BUCKETS.to_vec(),
            proposal_buckets: m.proposal_buckets.iter().map(|&c| c as f64).collect(),
            proposal_seconds_sum: m.proposal_seconds_sum,
        }
    }
}
