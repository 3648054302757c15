//! What a node reports of itself, and of a write it made.

use super::*;

/// A committed and applied write, as its proposer learns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub index: u64,
    pub term: u64,
    /// For `Cas`: whether it matched. For `Delete`: whether the key existed.
    pub ok: bool,
    /// For `Cas`: the value after the command. For `Set`/`Delete`: the previous value.
    pub value: Option<bytes::Bytes>,
    /// For the lock commands: the answer.
    pub lock: Option<crate::state_machine::locks::LockReply>,
    /// For a transaction: which branch ran and what its operations did.
    pub txn: Option<crate::state_machine::txn::TxnOutcome>,
    /// A retry of a keyed write: this is the first one's outcome, and nothing applied now.
    pub duplicate: bool,
}

/// A snapshot of a node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    pub role: Role,
    pub term: u64,
    pub leader: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// Voters and learners by name, sorted (shared: status is rebuilt every Ready).
    pub voters: Arc<[String]>,
    pub learners: Arc<[String]>,
    /// While this node leads under a lease confirmed by a quorum: when the lease ends. Until
    /// then no other node can have been elected. A stopping node withdraws it before its
    /// listener closes (its followers fail over as soon as they find the address refusing
    /// them). Read through [`Status::is_leader`], which checks the instant when asked (a
    /// stalled driver cannot stretch the lease).
    pub lease_until: Option<Instant>,
    /// This node was removed from the cluster: it serves no more requests.
    pub removed: bool,
}

impl Status {
    /// The status of a node that has stopped.
    pub fn stopped(mut self) -> Status {
        self.role = Role::Stopped;
        self.leader = None;
        self.lease_until = None;
        self
    }

    /// True while this node leads under an unexpired lease: the `isLeader` of the API, fit
    /// for fencing.
    pub fn is_leader(&self) -> bool {
        self.lease_remaining().is_some()
    }

    /// How long the lease still runs, if one is held now.
    pub fn lease_remaining(&self) -> Option<Duration> {
        let now = Instant::now();
        self.lease_until
            .filter(|until| now < *until)
            .map(|until| until - now)
    }
}
