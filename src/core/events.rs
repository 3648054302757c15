//! What a node reports to its user, delivered in batches (one per Ready).

use crate::state_machine::{KeyChange, OpKind};

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    Candidate,
    PreCandidate,
    Leader,
    Learner,
    Stopped,
}

impl Role {
    /// The name docs/API.md uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "precandidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
            Role::Stopped => "stopped",
        }
    }
}

/// One committed entry as applied on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    pub op: OpKind,
    /// Keys changed by the entry, in order.
    pub changes: Vec<KeyChange>,
    /// For `Cas`: whether it matched; for `Delete`: whether the key existed.
    pub ok: bool,
    /// For `Raw`: the user's bytes.
    pub data: Option<Vec<u8>>,
}

/// An engine event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The leader this node follows changed (possibly to none).
    LeaderChanged {
        leader: Option<String>,
        previous: Option<String>,
        term: u64,
    },
    /// This node's role changed.
    RoleChanged {
        role: Role,
        previous: Role,
        term: u64,
    },
    /// This leader's lease was confirmed by a quorum (`held`) or ran out / was lost.
    /// Jobs that must run on one node at a time start and stop on it.
    LeaseChanged { held: bool, term: u64 },
    /// Entries applied in this Ready, in log order.
    Applied(Vec<AppliedEntry>),
    /// A snapshot was taken (durable storage), restored on start, or installed from the
    /// leader. With app snapshots, `restore` holds the application's bytes to restore its own
    /// state machine from (on restore and install; `None` when the snapshot was just taken).
    Snapshot {
        index: u64,
        term: u64,
        bytes: u64,
        restore: Option<Vec<u8>>,
    },
    /// With app snapshots: the application's state machine, now exactly at `index`, must
    /// hand its bytes to [`crate::NodeHandle::provide_app_snapshot`].
    SnapshotRequest { index: u64 },
    /// A membership change was applied at `index` (see `NodeHandle::members`).
    MembershipChanged { index: u64 },
    /// On the leader: a member's health changed.
    PeerHealth {
        peer: String,
        health: crate::core::health::Health,
        previous: crate::core::health::Health,
    },
    /// A session this node kept ended without its holder closing it (`lost` is always true:
    /// expired by the leader, found ended by a renewal, or given up here because no renewal
    /// applied in time, before the cluster could expire it). A close stops the keeping at
    /// once and reports nothing.
    SessionEnded { id: u64, lost: bool },
    /// Session `session`, which this node keeps, was granted lock `name` with `fence` (the
    /// index of the granting entry).
    LockGranted {
        name: String,
        session: u64,
        fence: u64,
    },
    /// A fault stopped the node: the error's stable code (`ERR_STORAGE`, `ERR_INTERNAL`, ...)
    /// and what happened.
    Failed { code: &'static str, message: String },
}
