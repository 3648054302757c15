//! The N-API binding: a thin shell that converts arguments, maps errors to the `ERR_*` codes
//! of docs/API.md, and delivers each batch of engine events with one threadsafe-function call.
//! It holds no Raft logic; `js/` wraps it in the public `RaftNode`.
//!
//! One file per engine concept, each a `#[napi] impl NativeRaftNode` block: this one the
//! node's life (options, start, status, stop), `batch` the writes and reads that cross in
//! batches, `kv` the rest of the key-value methods, `membership` the members and leadership,
//! `operations` backups, restore and stopped data directories, `faults` the test hooks; `events`, `errors` and `convert` the shapes values take on their
//! way to JS.

mod allocator;
mod batch;
mod convert;
mod coordination;
mod errors;
mod events;
mod faults;
mod kv;
mod logging;
mod membership;
mod operations;
mod runtime;
mod txn;
mod watch;

use crate::sync::Recover;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::{Command, Config, Error as EngineError, Node, NodeHandle, WriteOptions};
use convert::NativeStatus;
use errors::{settle, thrown, NativeFailure, Thrown};
use events::{to_events, NativeEventBatch};

/// The engine's options, as the JS layer has validated them.
#[napi(object)]
pub struct NativeOptions {
    pub id: String,
    pub peers: Option<HashMap<String, String>>,
    pub listen: Option<String>,
    pub cluster_id: Option<String>,
    pub heartbeat_ms: Option<u32>,
    pub election_timeout_ms: Option<u32>,
    pub pre_vote: Option<bool>,
    pub check_quorum: Option<bool>,
    pub max_proposal_bytes: Option<u32>,
    pub max_pending_writes: Option<u32>,
    pub log_level: Option<String>,
    pub http_url: Option<String>,
    pub data_dir: Option<String>,
    pub snapshot_every: Option<f64>,
    /// The JS side keeps a state machine of its own with snapshot hooks.
    pub app_snapshots: Option<bool>,
    pub record_changes: Option<bool>,
    pub join: Option<bool>,
    /// Restart as the only member of a new cluster, keeping the data (lost quorum).
    pub force_new_cluster: Option<bool>,
    /// The cluster's shared secret (peers must prove it).
    pub secret: Option<String>,
    /// The peer network is trusted: no secret or TLS needed beyond loopback.
    pub insecure: Option<bool>,
    /// TLS: this node's certificate chain and key, and the members' CA (PEM).
    pub tls_cert: Option<Buffer>,
    pub tls_key: Option<Buffer>,
    pub tls_ca: Option<Buffer>,
    /// Tests: a kill loses what was written but not fsynced, as a power loss would (the
    /// crash tests' nodes; no user option sets it).
    pub emulate_power_loss: Option<bool>,
}

/// Where a started node listens.
#[napi(object)]
pub struct NativeAddress {
    pub address: String,
    pub url: String,
}

type EventCallback = ThreadsafeFunction<NativeEventBatch, (), NativeEventBatch, Status, false>;

/// A raft node as the JS layer sees it.
#[napi]
pub struct NativeRaftNode {
    config: Config,
    node: Mutex<Option<Node>>,
    handle: Mutex<Option<NodeHandle>>,
    /// Whether JS listens for applied entries (kept here for a node not started yet).
    want_applied: AtomicBool,
    /// Where the answers of submitted operations gather (from `start` on).
    answers: Mutex<Option<std::sync::Arc<batch::Answers>>>,
}

fn ms(value: u32) -> Duration {
    Duration::from_millis(u64::from(value))
}

/// A write's options from the JS layer's words.
fn write_options(timeout_ms: u32, forward: bool) -> WriteOptions {
    WriteOptions {
        timeout: ms(timeout_ms),
        forward,
    }
}

/// A write's options as JS gives them to the writes that do not cross in batches.
#[napi(object)]
pub struct NativeWriteOptions {
    pub timeout_ms: u32,
    pub forward: bool,
    /// The write applies once per key (see `state_machine::idempotency`).
    pub idempotency_key: Option<String>,
}

impl NativeWriteOptions {
    /// `command` as proposed (applied once per idempotency key, when one is given), and the
    /// options of its proposal.
    fn write(self, command: Command) -> (Command, WriteOptions) {
        let command = match self.idempotency_key {
            Some(key) => Command::Idempotent {
                key,
                command: Box::new(command),
            },
            None => command,
        };
        (command, write_options(self.timeout_ms, self.forward))
    }
}

#[napi]
impl NativeRaftNode {
    /// Checks the options; nothing starts.
    #[napi(constructor)]
    pub fn new(options: NativeOptions) -> std::result::Result<Self, Thrown> {
        let mut config = Config::new(options.id);
        config.peers = options.peers.unwrap_or_default().into_iter().collect();
        config.listen = options.listen;
        if let Some(cluster_id) = options.cluster_id {
            config.cluster_id = cluster_id;
        }
        if let Some(v) = options.heartbeat_ms {
            config.heartbeat = ms(v);
        }
        if let Some(v) = options.election_timeout_ms {
            config.election_timeout = ms(v);
        }
        config.pre_vote = options.pre_vote.unwrap_or(true);
        config.check_quorum = options.check_quorum.unwrap_or(true);
        if let Some(v) = options.max_proposal_bytes {
            config.max_proposal_bytes = v as usize;
        }
        if let Some(v) = options.max_pending_writes {
            config.max_pending_writes = v as usize;
        }
        config.data_dir = options.data_dir.map(std::path::PathBuf::from);
        if let Some(v) = options.snapshot_every {
            config.snapshot_every = v as u64;
        }
        config.app_snapshots = options.app_snapshots.unwrap_or(false);
        config.record_changes = options.record_changes.unwrap_or(false);
        config.join = options.join.unwrap_or(false);
        config.force_new_cluster = options.force_new_cluster.unwrap_or(false);
        config.secret = options.secret.map(crate::config::Secret::new);
        config.insecure = options.insecure.unwrap_or(false);
        config.emulate_power_loss = options.emulate_power_loss.unwrap_or(false);
        if let (Some(cert), Some(key)) = (options.tls_cert, options.tls_key) {
            config.tls = Some(crate::config::TlsFiles {
                cert: cert.to_vec(),
                key: crate::config::Secret::new(key.as_ref()),
                ca: options.tls_ca.map(|ca| ca.to_vec()),
            });
        }
        config.http_url = options.http_url;
        config.log_level = logging::level(options.log_level.as_deref());
        config.validate().map_err(thrown)?;
        crate::logging::install();
        Ok(NativeRaftNode {
            config,
            node: Mutex::new(None),
            handle: Mutex::new(None),
            want_applied: AtomicBool::new(false),
            answers: Mutex::new(None),
        })
    }

    /// Binds, connects and starts ticking; `on_events` receives every event batch in order,
    /// `on_answers` the answers of submitted operations, `on_log` (when given) every log
    /// line instead of stderr. The event callback is released when the node stops; the
    /// others are weak: a stopped node keeps nothing alive.
    #[napi]
    pub async fn start(
        &self,
        on_events: EventCallback,
        on_answers: batch::AnswerCallback,
        on_log: Option<logging::LogCallback>,
    ) -> Either<NativeAddress, NativeFailure> {
        if self.started().is_some() {
            let error = EngineError::Invalid("the node was started already".into());
            return Either::B(error.into());
        }
        let mut config = self.config.clone();
        config.log_sink = on_log.map(logging::js_sink);
        let mut node = match crate::start(config).await {
            Ok(node) => node,
            Err(error) => return Either::B(error.into()),
        };
        let handle = node.handle();
        let mut events = node.take_events().expect("a new node has its events");
        handle.set_applied_events(self.want_applied.load(Ordering::Relaxed));
        tokio::spawn(async move {
            while let Some(batch) = events.recv().await {
                on_events.call(to_events(batch), ThreadsafeFunctionCallMode::NonBlocking);
            }
            // `on_events` drops here: the JS callback no longer holds the event loop.
        });
        let address = NativeAddress {
            address: handle.local_addr().to_string(),
            url: handle.url().to_string(),
        };
        // The answers of submitted writes and reads cross once a driver turn, all together.
        let answers = batch::Answers::new(on_answers);
        let flushed = std::sync::Arc::clone(&answers);
        handle.on_turn_end(move || flushed.flush());
        *self.answers.lock().recover() = Some(answers);
        *self.node.lock().recover() = Some(node);
        *self.handle.lock().recover() = Some(handle);
        Either::A(address)
    }

    /// The started node's handle (it stays after `stop`), or None before `start`.
    fn started(&self) -> Option<NodeHandle> {
        self.handle.lock().recover().clone()
    }

    /// The started node's handle, or `ERR_STOPPED` before `start`.
    fn handle(&self) -> crate::Result<NodeHandle> {
        self.started().ok_or(EngineError::Stopped)
    }

    /// Turns the delivery of applied entries on or off (JS listens for them or not).
    #[napi]
    pub fn set_want_applied(&self, want: bool) {
        self.want_applied.store(want, Ordering::Relaxed);
        if let Some(handle) = self.started() {
            handle.set_applied_events(want);
        }
    }

    /// The node's counters (null before `start`); they keep their values after `stop`.
    #[napi]
    pub fn metrics(&self) -> Option<convert::NativeMetrics> {
        self.started()
            .map(|h| convert::NativeMetrics::new(h.metrics()))
    }

    /// The node's status (all fields of docs/API.md's `status()` but `members`).
    #[napi]
    pub fn status(&self) -> Option<NativeStatus> {
        self.started().map(|h| {
            let mut status = NativeStatus::from(h.status());
            status.leader_http_url = status.leader_id.as_deref().and_then(|l| h.http_url_of(l));
            status
        })
    }

    /// Graceful stop; idempotent.
    #[napi]
    pub async fn stop(&self) {
        let node = self.node.lock().recover().take();
        if let Some(node) = node {
            node.stop().await;
        }
    }

    /// Abrupt stop, as if the process died (tests).
    #[napi]
    pub async fn kill(&self) {
        let node = self.node.lock().recover().take();
        if let Some(node) = node {
            node.kill().await;
        }
    }

    /// The application's snapshot bytes for the point `index` of a `snapshotRequest`.
    #[napi]
    pub async fn provide_snapshot(&self, index: f64, data: Buffer) -> Either<(), NativeFailure> {
        let data = data.to_vec();
        let provided = async {
            let handle = self.handle()?;
            handle.provide_app_snapshot(index as u64, data).await
        }
        .await;
        settle(provided, |()| ())
    }

    /// Sets the URL of a peer (test clusters learn ephemeral ports after start).
    #[napi]
    pub fn set_peer_url(&self, peer: String, url: String) -> std::result::Result<(), Thrown> {
        self.handle()
            .and_then(|h| h.set_peer_url(&peer, &url))
            .map_err(thrown)
    }
}
