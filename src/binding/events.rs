//! Engine events as JS receives them: one tagged object per event (`kind` says which), one
//! JS call per batch.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::{AppliedEntry, Event, KeyChange, OpKind};

/// One key an entry changed: its value after the entry (absent: deleted) and before.
#[napi(object)]
pub struct NativeChange {
    pub key: String,
    pub value: Option<Buffer>,
    pub prev: Option<Buffer>,
}

/// One applied entry.
#[napi(object)]
pub struct NativeApplied {
    pub index: f64,
    pub term: f64,
    /// `set`, `delete`, `cas`, `batch`, `incr` or `raw`.
    pub op: String,
    pub ok: bool,
    pub changes: Vec<NativeChange>,
    pub data: Option<Buffer>,
}

/// One engine event, tagged by `kind`.
#[napi(discriminant = "kind", discriminant_case = "camelCase")]
pub enum NativeEvent {
    /// The leader changed (`leaderId` absent: none known).
    Leader {
        term: f64,
        leader_id: Option<String>,
        previous_leader_id: Option<String>,
    },
    /// This node's role changed.
    Role {
        term: f64,
        role: String,
        previous_role: String,
    },
    /// The lease was gained or lost.
    Lease { term: f64, held: bool },
    /// Entries applied, in log order.
    Applied { entries: Vec<NativeApplied> },
    /// A snapshot restored on start or installed from the leader; `restore`: the
    /// application's bytes to restore its state machine from.
    Snapshot {
        term: f64,
        index: f64,
        bytes: f64,
        restore: Option<Buffer>,
    },
    /// A membership change took effect at `index`.
    Membership { index: f64 },
    /// The leader judged a member's health anew.
    PeerHealth {
        peer: String,
        health: String,
        previous_health: String,
    },
    /// The application's state is due for a snapshot at `index`.
    SnapshotRequest { index: f64 },
    /// A session this node kept ended (`lost`: expired or given up, not closed here).
    Session { id: f64, lost: bool },
    /// A session this node keeps was granted lock `name` with `fence`.
    Lock {
        name: String,
        session: f64,
        fence: f64,
    },
    /// The engine stopped itself: the error's code and message.
    Failed { code: String, message: String },
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
        OpKind::Session => "session",
        OpKind::Lock => "lock",
        OpKind::Txn => "txn",
    }
}

pub(super) fn change(c: KeyChange) -> NativeChange {
    NativeChange {
        key: c.key,
        value: c.value.map(|v| Buffer::from(v.to_vec())),
        prev: c.prev.map(|v| Buffer::from(v.to_vec())),
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

impl From<Event> for NativeEvent {
    /// Moves every value (no copies).
    fn from(event: Event) -> Self {
        match event {
            Event::LeaderChanged {
                leader,
                previous,
                term,
            } => NativeEvent::Leader {
                term: term as f64,
                leader_id: leader,
                previous_leader_id: previous,
            },
            Event::RoleChanged {
                role,
                previous,
                term,
            } => NativeEvent::Role {
                term: term as f64,
                role: role.as_str().to_string(),
                previous_role: previous.as_str().to_string(),
            },
            Event::LeaseChanged { held, term } => NativeEvent::Lease {
                term: term as f64,
                held,
            },
            Event::Applied(entries) => NativeEvent::Applied {
                entries: entries.into_iter().map(applied).collect(),
            },
            Event::Snapshot {
                index,
                term,
                bytes,
                restore,
            } => NativeEvent::Snapshot {
                term: term as f64,
                index: index as f64,
                bytes: bytes as f64,
                restore: restore.map(Buffer::from),
            },
            Event::MembershipChanged { index } => NativeEvent::Membership {
                index: index as f64,
            },
            Event::PeerHealth {
                peer,
                health,
                previous,
            } => NativeEvent::PeerHealth {
                peer,
                health: health.as_str().to_string(),
                previous_health: previous.as_str().to_string(),
            },
            Event::SnapshotRequest { index } => NativeEvent::SnapshotRequest {
                index: index as f64,
            },
            Event::SessionEnded { id, lost } => NativeEvent::Session {
                id: id as f64,
                lost,
            },
            Event::LockGranted {
                name,
                session,
                fence,
            } => NativeEvent::Lock {
                name,
                session: session as f64,
                fence: fence as f64,
            },
            Event::Failed { code, message } => NativeEvent::Failed {
                code: code.to_string(),
                message,
            },
        }
    }
}

/// Converts a batch.
pub fn to_events(batch: Vec<Event>) -> NativeEventBatch {
    NativeEventBatch {
        events: batch.into_iter().map(NativeEvent::from).collect(),
    }
}
