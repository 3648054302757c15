//! Engine errors, each with the stable code that docs/API.md gives it.

/// Why an engine operation failed. [`Error::code`] is the stable `err.code` of docs/API.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The operation needs the leader; `leader` is the one this node follows, if known.
    #[error("not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { leader: Option<String> },
    /// No leader is known right now (election in progress or no quorum).
    #[error("no leader is known")]
    NoLeader,
    /// The deadline passed. For a write the outcome is unknown: it may still commit.
    #[error("timed out after {ms} ms{}", if *.unknown_outcome { " (the write may still commit)" } else { "" })]
    Timeout { ms: u64, unknown_outcome: bool },
    /// Leadership changed while the write was in flight and it was not applied in its term:
    /// most likely it was dropped with the old leader, but its outcome is unknown.
    #[error("leadership changed after the write was proposed in term {term}; it was probably dropped, but may still commit")]
    LeaderChanged { term: u64 },
    /// This node caught up by installing the leader's snapshot at `index` while the write
    /// was in flight: the write may be inside it (no entry of it will be applied here), or
    /// may have been dropped. Its outcome is unknown.
    #[error("this node caught up by installing a snapshot at index {index} while the write was in flight; the write may be in it or may have been dropped")]
    CaughtUpBySnapshot { index: u64 },
    /// The node is stopped or stopping.
    #[error("the node is stopped")]
    Stopped,
    /// The proposal is larger than `max_proposal_bytes`.
    #[error("proposal of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// Durable storage failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The listen address is taken.
    #[error("address in use: {0}")]
    AddrInUse(String),
    /// A membership change is already in progress.
    #[error("a membership change is already in progress")]
    ConfChangeInProgress,
    /// No member has that name.
    #[error("unknown member: {0}")]
    UnknownMember(String),
    /// Invalid argument, configuration or state.
    #[error("{0}")]
    Invalid(String),
    /// This node was removed from the cluster: it serves no more requests.
    #[error("this node was removed from the cluster")]
    Removed,
    /// Too many requests wait on this node already (`what` says which queue and its bound);
    /// nothing was done: retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The session named does not exist: it ended (closed, expired, or given up by its
    /// holder) or never did.
    #[error("session lost: {0}")]
    SessionLost(String),
    /// A bug in the engine (a panic) stopped the node; its state on disk is as last written.
    #[error("internal fault: {0}")]
    Internal(String),
}

impl Error {
    /// The stable error code of docs/API.md.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotLeader { .. } => "ERR_NOT_LEADER",
            Error::NoLeader => "ERR_NO_LEADER",
            // Same contract as a timeout: the outcome of the write is unknown.
            Error::Timeout { .. }
            | Error::LeaderChanged { .. }
            | Error::CaughtUpBySnapshot { .. } => "ERR_TIMEOUT",
            Error::Stopped => "ERR_STOPPED",
            Error::TooLarge { .. } => "ERR_TOO_LARGE",
            Error::Storage(_) => "ERR_STORAGE",
            Error::AddrInUse(_) => "ERR_ADDR_IN_USE",
            Error::ConfChangeInProgress => "ERR_CONF_CHANGE_IN_PROGRESS",
            Error::UnknownMember(_) => "ERR_UNKNOWN_MEMBER",
            Error::Invalid(_) => "ERR_INVALID",
            Error::Removed => "ERR_REMOVED",
            Error::Overloaded(_) => "ERR_OVERLOADED",
            Error::SessionLost(_) => "ERR_SESSION_LOST",
            Error::Internal(_) => "ERR_INTERNAL",
        }
    }

    /// The error that `code` names, for errors decided on another node (a leader's refusal
    /// of a membership change travels in the log as a code and a message).
    pub fn from_code(code: &str, message: String) -> Error {
        match code {
            "ERR_CONF_CHANGE_IN_PROGRESS" => Error::ConfChangeInProgress,
            "ERR_UNKNOWN_MEMBER" => Error::UnknownMember(message),
            "ERR_REMOVED" => Error::Removed,
            "ERR_TOO_LARGE" => {
                let mut figures = message.split('/').map(|n| n.parse().unwrap_or(0));
                let size = figures.next().unwrap_or(0);
                let max = figures.next().unwrap_or(0);
                Error::TooLarge { size, max }
            }
            _ => Error::Invalid(message),
        }
    }
}

/// Shorthand for engine results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
