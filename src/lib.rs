//! raftline's engine: Raft consensus (tikv's `raft` crate) with a WebSocket + MessagePack peer
//! transport and a built-in replicated key-value state machine. It knows nothing of Node.js;
//! the N-API binding (the `napi` feature, which the npm build turns on) is a thin layer over
//! [`NodeHandle`].
//!
//! # Using it
//! 1. Build a [`Config`] (name, peers name -> `ws://` URL, timing) and call [`start`] inside a
//!    tokio runtime. It binds the listener and returns a [`Node`].
//! 2. Take the event stream once ([`Node::take_events`]) and drain it: leader and role
//!    changes and the applied entries arrive in batches, one per Ready, in log order. The
//!    stream is unbounded: a consumer that stops draining grows memory.
//! 3. Use [`NodeHandle`] (cloneable) to write ([`NodeHandle::set`], `delete`, `cas`, `batch`,
//!    `propose_raw`), to read ([`NodeHandle::get`], linearizable by default), to watch the
//!    [`Status`] and to transfer leadership.
//! 4. A write that fails with [`Error::Timeout`] may still commit: its outcome is unknown.
//!    [`Error::NoLeader`] means it was never proposed; retry after an election.
//! 5. Stop with [`Node::stop`] (or [`NodeHandle::stop`]): pending requests fail with
//!    [`Error::Stopped`] and the port is released before it returns.
//!
//! # Inside
//! One driver task per node owns the raft `RawNode` (in [`core::Core`]) and handles each
//! Ready in the documented order; the transport keeps one bounded queue and writer task per
//! peer so that no peer can stall the driver.

// The layers, top down; each imports only those below it.
#[cfg(feature = "napi")]
mod binding;
pub mod core;
pub mod logging;
pub mod operations;
mod runtime;
pub mod state_machine;
pub mod storage;
pub mod transport;
// The vocabulary every layer shares.
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod limits;
pub mod membership;
pub mod peer_messages;
mod sync;

pub use crate::core::events::{AppliedEntry, Event, Role};
pub use crate::core::health::{Health, MemberView};
pub use crate::core::history::Since;
pub use crate::core::{Status, WriteOutcome};
pub use config::Config;
pub use error::{Error, Result};
pub use membership::MembershipChange;
pub use runtime::handle::{Consistency, NodeHandle, ReadOptions, WriteOptions, DEFAULT_TIMEOUT};
pub use runtime::{start, EventStream, Node};
pub use state_machine::locks::LockReply;
pub use state_machine::txn::{Compare, Txn, TxnOp, TxnOpResult, TxnOutcome};
pub use state_machine::{BatchOp, Command, KeyChange, KeyRecord, OpKind};
