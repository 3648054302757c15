//! Engine values in the shapes JS receives.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::{
    AppliedEntry, Error as EngineError, Event, KeyChange, OpKind, Status as EngineStatus,
    WriteOutcome,
};

/// An engine error as a JS error: the message is JSON `{code, message, leaderId?}`, which the
/// JS layer turns into a `RaftError` with that `code`.
pub fn engine_error(error: EngineError) -> Error {
    let leader = match &error {
        EngineError::NotLeader { leader } => leader.clone(),
        _ => None,
    };
    let payload = format!(
        "{{\"code\":{},\"message\":{},\"leaderId\":{}}}",
        json_string(error.code()),
        json_string(&error.to_string()),
        leader.map_or("null".to_string(), |l| json_string(&l)),
    );
    Error::new(Status::GenericFailure, payload)
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

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
}

impl From<WriteOutcome> for NativeWriteResult {
    fn from(o: WriteOutcome) -> Self {
        NativeWriteResult {
            index: o.index as f64,
            term: o.term as f64,
            ok: o.ok,
            value: o.value.map(Buffer::from),
        }
    }
}

#[napi(object)]
pub struct NativeChange {
    pub key: String,
    pub value: Option<Buffer>,
    pub prev: Option<Buffer>,
}

#[napi(object)]
pub struct NativeApplied {
    pub index: f64,
    pub term: f64,
    pub op: String,
    pub ok: bool,
    pub changes: Vec<NativeChange>,
    pub data: Option<Buffer>,
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
            proposal_bucket_bounds: crate::runtime::metrics::PROPOSAL_BUCKETS.to_vec(),
            proposal_buckets: m.proposal_buckets.iter().map(|&c| c as f64).collect(),
            proposal_seconds_sum: m.proposal_seconds_sum,
        }
    }
}

/// One engine event; `kind` says which fields are set.
#[napi(object)]
pub struct NativeEvent {
    /// `leader`, `role`, `lease`, `applied`, `snapshot`, `snapshotRequest`, `peerHealth`
    /// or `failed`.
    pub kind: String,
    pub term: Option<f64>,
    pub leader_id: Option<String>,
    pub previous_leader_id: Option<String>,
    pub role: Option<String>,
    pub previous_role: Option<String>,
    pub held: Option<bool>,
    /// `snapshot`: its index and size.
    pub index: Option<f64>,
    pub bytes: Option<f64>,
    /// `peerHealth`: which member, its health and the one before.
    pub peer: Option<String>,
    pub health: Option<String>,
    pub previous_health: Option<String>,
    /// `snapshot`: the application's bytes to restore its state machine from.
    pub restore: Option<Buffer>,
    pub entries: Option<Vec<NativeApplied>>,
    /// `failed`: the error's code and message.
    pub code: Option<String>,
    pub message: Option<String>,
}

/// The events of one Ready: one JS call.
#[napi(object)]
pub struct NativeEventBatch {
    pub events: Vec<NativeEvent>,
}

fn op_name(op: &OpKind) -> &'static str {
    match op {
        OpKind::Set => "set",
        OpKind::Delete => "delete",
        OpKind::Cas => "cas",
        OpKind::Batch => "batch",
        OpKind::Raw => "raw",
        OpKind::Incr => "incr",
    }
}

fn blank(kind: &str) -> NativeEvent {
    NativeEvent {
        kind: kind.to_string(),
        term: None,
        leader_id: None,
        previous_leader_id: None,
        role: None,
        previous_role: None,
        held: None,
        index: None,
        bytes: None,
        restore: None,
        peer: None,
        health: None,
        previous_health: None,
        entries: None,
        code: None,
        message: None,
    }
}

fn change(c: KeyChange) -> NativeChange {
    NativeChange {
        key: c.key,
        value: c.value.map(Buffer::from),
        prev: c.prev.map(Buffer::from),
    }
}

fn applied(e: AppliedEntry) -> NativeApplied {
    NativeApplied {
        index: e.index as f64,
        term: e.term as f64,
        op: op_name(&e.op).to_string(),
        ok: e.ok,
        changes: e.changes.into_iter().map(change).collect(),
        data: e.data.map(Buffer::from),
    }
}

/// Converts a batch, moving every value (no copies).
pub fn to_events(batch: Vec<Event>) -> NativeEventBatch {
    let events = batch
        .into_iter()
        .map(|event| match event {
            Event::LeaderChanged {
                leader,
                previous,
                term,
            } => NativeEvent {
                term: Some(term as f64),
                leader_id: leader,
                previous_leader_id: previous,
                ..blank("leader")
            },
            Event::RoleChanged {
                role,
                previous,
                term,
            } => NativeEvent {
                term: Some(term as f64),
                role: Some(role.as_str().to_string()),
                previous_role: Some(previous.as_str().to_string()),
                ..blank("role")
            },
            Event::LeaseChanged { held, term } => NativeEvent {
                term: Some(term as f64),
                held: Some(held),
                ..blank("lease")
            },
            Event::Applied(entries) => NativeEvent {
                entries: Some(entries.into_iter().map(applied).collect()),
                ..blank("applied")
            },
            Event::Snapshot {
                index,
                term,
                bytes,
                restore,
            } => NativeEvent {
                term: Some(term as f64),
                index: Some(index as f64),
                bytes: Some(bytes as f64),
                restore: restore.map(Buffer::from),
                ..blank("snapshot")
            },
            Event::MembershipChanged { index } => NativeEvent {
                index: Some(index as f64),
                ..blank("membership")
            },
            Event::PeerHealth {
                peer,
                health,
                previous,
            } => NativeEvent {
                peer: Some(peer),
                health: Some(health.as_str().to_string()),
                previous_health: Some(previous.as_str().to_string()),
                ..blank("peerHealth")
            },
            Event::SnapshotRequest { index } => NativeEvent {
                index: Some(index as f64),
                ..blank("snapshotRequest")
            },
            Event::Failed { code, message } => NativeEvent {
                code: Some(code.to_string()),
                message: Some(message),
                ..blank("failed")
            },
        })
        .collect();
    NativeEventBatch { events }
}
