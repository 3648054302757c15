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

#[cfg(feature = "napi")]
mod binding;
pub mod clock;
pub mod config;
pub mod core;
mod driver;
pub mod error;
pub mod events;
mod handle;
pub mod health;
pub mod ids;
pub mod kv;
mod kv_number;
mod lease;
mod log_bridge;
pub mod logging;
pub mod membership;
pub mod metrics;
mod node;
pub mod requests;
pub mod screen;
pub mod snapshots;
pub mod storage;
mod sync;
pub mod transport;
pub mod wire;

pub use crate::core::{Status, WriteOutcome};
pub use config::Config;
pub use error::{Error, Result};
pub use events::{AppliedEntry, Event, Role};
pub use handle::{Consistency, NodeHandle, ReadOptions, WriteOptions, DEFAULT_TIMEOUT};
pub use health::{Health, MemberView};
pub use kv::{BatchOp, Command, KeyChange, OpKind};
pub use membership::MembershipChange;
pub use node::{start, EventStream, Node};
