//! The N-API binding: a thin shell that converts arguments, maps errors to the `ERR_*` codes
//! of docs/API.md, and delivers each batch of engine events with one threadsafe-function call.
//! It holds no Raft logic; `js/` wraps it in the public `RaftNode`.

mod convert;
mod logging;

use crate::sync::Recover;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::{
    BatchOp, Command, Config, Consistency, Error as EngineError, Node, NodeHandle, ReadOptions,
    WriteOptions,
};
use convert::{engine_error, to_events, NativeEventBatch, NativeStatus, NativeWriteResult};

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
    pub log_level: Option<String>,
    pub http_url: Option<String>,
    pub data_dir: Option<String>,
    pub snapshot_every: Option<f64>,
    /// The JS side keeps a state machine of its own with snapshot hooks.
    pub app_snapshots: Option<bool>,
    pub join: Option<bool>,
    /// The cluster's shared secret (peers must prove it).
    pub secret: Option<String>,
    /// The peer network is trusted: no secret or TLS needed beyond loopback.
    pub insecure: Option<bool>,
    /// TLS: this node's certificate chain and key, and the members' CA (PEM).
    pub tls_cert: Option<Buffer>,
    pub tls_key: Option<Buffer>,
    pub tls_ca: Option<Buffer>,
}

/// One operation of a batch.
#[napi(object)]
pub struct NativeBatchOp {
    /// `"set"` or `"delete"`.
    pub op: String,
    pub key: String,
    pub value: Option<Buffer>,
}

/// Where a started node listens.
#[napi(object)]
pub struct NativeAddress {
    pub address: String,
    pub url: String,
}

/// One key-value pair.
#[napi(object)]
pub struct NativeEntry {
    pub key: String,
    pub value: Buffer,
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
}

fn ms(value: u32) -> Duration {
    Duration::from_millis(u64::from(value))
}

#[napi]
impl NativeRaftNode {
    /// Checks the options; nothing starts.
    #[napi(constructor)]
    pub fn new(options: NativeOptions) -> Result<Self> {
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
        config.data_dir = options.data_dir.map(std::path::PathBuf::from);
        if let Some(v) = options.snapshot_every {
            config.snapshot_every = v as u64;
        }
        config.app_snapshots = options.app_snapshots.unwrap_or(false);
        config.join = options.join.unwrap_or(false);
        config.secret = options.secret.map(crate::config::Secret::new);
        config.insecure = options.insecure.unwrap_or(false);
        // The crash tests' power-loss emulation, for the child processes they start (the
        // engine itself reads no environment).
        config.emulate_power_loss = std::env::var_os("RAFTLINE_TEST_POWER_LOSS").is_some();
        if let (Some(cert), Some(key)) = (options.tls_cert, options.tls_key) {
            config.tls = Some(crate::config::TlsFiles {
                cert: cert.to_vec(),
                key: crate::config::Secret::new(key.as_ref()),
                ca: options.tls_ca.map(|ca| ca.to_vec()),
            });
        }
        config.http_url = options.http_url;
        config.log_level = logging::level(options.log_level.as_deref());
        config.validate().map_err(engine_error)?;
        crate::logging::install();
        Ok(NativeRaftNode {
            config,
            node: Mutex::new(None),
            handle: Mutex::new(None),
            want_applied: AtomicBool::new(false),
        })
    }

    /// Binds, connects and starts ticking; `on_events` receives every event batch in order,
    /// `on_log` (when given) every log line instead of stderr. The callbacks are released
    /// when the node stops, so a stopped node keeps nothing alive.
    #[napi]
    pub async fn start(
        &self,
        on_events: EventCallback,
        on_log: Option<logging::LogCallback>,
    ) -> Result<NativeAddress> {
        if self.started().is_some() {
            return Err(engine_error(EngineError::Invalid(
                "the node was started already".into(),
            )));
        }
        let mut config = self.config.clone();
        config.log_sink = on_log.map(logging::js_sink);
        let mut node = crate::start(config).await.map_err(engine_error)?;
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
        *self.node.lock().recover() = Some(node);
        *self.handle.lock().recover() = Some(handle);
        Ok(address)
    }

    /// The started node's handle (it stays after `stop`), or None before `start`.
    fn started(&self) -> Option<NodeHandle> {
        self.handle.lock().recover().clone()
    }

    fn handle(&self) -> Result<NodeHandle> {
        self.started()
            .ok_or_else(|| engine_error(EngineError::Stopped))
    }

    /// Members as this node sees them (health is known on the leader).
    #[napi]
    pub fn members(&self) -> Result<Vec<convert::NativeMember>> {
        let handle = self.handle()?;
        Ok(handle
            .members()
            .into_iter()
            .map(|m| {
                let http_url = handle.http_url_of(&m.name);
                convert::NativeMember {
                    http_url,
                    ..m.into()
                }
            })
            .collect())
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

    /// Replicates `command`; the result once it is applied on this node.
    async fn write(
        &self,
        command: Command,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        let options = WriteOptions {
            timeout: ms(timeout_ms),
            forward,
        };
        let outcome = self.handle()?.write(command, options).await;
        outcome.map(NativeWriteResult::from).map_err(engine_error)
    }

    #[napi]
    pub async fn set(
        &self,
        key: String,
        value: Buffer,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        let value = value.to_vec().into();
        self.write(Command::Set { key, value }, timeout_ms, forward)
            .await
    }

    #[napi]
    pub async fn delete(
        &self,
        key: String,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        self.write(Command::Delete { key }, timeout_ms, forward)
            .await
    }

    /// Compare-and-set; `expected: null` means "absent", `next: null` deletes.
    #[napi]
    pub async fn cas(
        &self,
        key: String,
        expected: Option<Buffer>,
        next: Option<Buffer>,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        let expected = expected.map(|b| b.to_vec().into());
        let next = next.map(|b| b.to_vec().into());
        self.write(
            Command::Cas {
                key,
                expected,
                next,
            },
            timeout_ms,
            forward,
        )
        .await
    }

    /// Atomic numeric add; `ok: false` when the value is not a number.
    #[napi]
    pub async fn incr(
        &self,
        key: String,
        by: f64,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        self.write(Command::Incr { key, by }, timeout_ms, forward)
            .await
    }

    #[napi]
    pub async fn batch(
        &self,
        ops: Vec<NativeBatchOp>,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        let ops = ops
            .into_iter()
            .map(|op| match (op.op.as_str(), op.value) {
                ("set", Some(value)) => Ok(BatchOp::Set {
                    key: op.key,
                    value: value.to_vec().into(),
                }),
                ("delete", _) => Ok(BatchOp::Delete { key: op.key }),
                (other, _) => Err(engine_error(EngineError::Invalid(format!(
                    "invalid batch op {other:?}"
                )))),
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(Command::Batch { ops }, timeout_ms, forward)
            .await
    }

    #[napi]
    pub async fn propose(
        &self,
        data: Buffer,
        timeout_ms: u32,
        forward: bool,
    ) -> Result<NativeWriteResult> {
        self.write(Command::Raw(data.to_vec().into()), timeout_ms, forward)
            .await
    }

    /// The value at `key` under `consistency` (`linearizable`, `lease` or `local`).
    #[napi]
    pub async fn get(
        &self,
        key: String,
        consistency: String,
        timeout_ms: u32,
    ) -> Result<Option<Buffer>> {
        let options = read_options(&consistency, timeout_ms)?;
        let value = self
            .handle()?
            .get(&key, options)
            .await
            .map_err(engine_error)?;
        Ok(value.map(Buffer::from))
    }

    /// Synchronous read of this node's applied state.
    #[napi]
    pub fn get_local(&self, key: String) -> Result<Option<Buffer>> {
        Ok(self.handle()?.get_local(&key).map(Buffer::from))
    }

    /// Pairs under `prefix`, sorted by key.
    #[napi]
    pub async fn entries(
        &self,
        prefix: String,
        consistency: String,
        timeout_ms: u32,
    ) -> Result<Vec<NativeEntry>> {
        let options = read_options(&consistency, timeout_ms)?;
        let pairs = self
            .handle()?
            .entries(&prefix, options)
            .await
            .map_err(engine_error)?;
        Ok(pairs
            .into_iter()
            .map(|(key, value)| NativeEntry {
                key,
                value: value.into(),
            })
            .collect())
    }

    /// Adds a member (started with `join`) at `url`, as a learner or a voter.
    #[napi]
    pub async fn add_member(
        &self,
        id: String,
        url: String,
        learner: bool,
        timeout_ms: u32,
    ) -> Result<f64> {
        let change = crate::MembershipChange::Add {
            name: id,
            url,
            learner,
        };
        self.change(change, timeout_ms).await
    }

    /// Makes a learner a voter.
    #[napi]
    pub async fn promote_member(&self, id: String, timeout_ms: u32) -> Result<f64> {
        self.change(crate::MembershipChange::Promote { name: id }, timeout_ms)
            .await
    }

    /// Removes a member.
    #[napi]
    pub async fn remove_member(&self, id: String, timeout_ms: u32) -> Result<f64> {
        self.change(crate::MembershipChange::Remove { name: id }, timeout_ms)
            .await
    }

    async fn change(&self, change: crate::MembershipChange, timeout_ms: u32) -> Result<f64> {
        let handle = self.handle()?;
        let index = handle
            .change_membership(change, ms(timeout_ms))
            .await
            .map_err(engine_error)?;
        Ok(index as f64)
    }

    /// Hands leadership to `to` (or the best voter); resolves with the new leader.
    #[napi]
    pub async fn transfer_leadership(&self, to: Option<String>, timeout_ms: u32) -> Result<String> {
        let handle = self.handle()?;
        handle
            .transfer_leadership(to.as_deref(), ms(timeout_ms))
            .await
            .map_err(engine_error)
    }

    /// Graceful stop; idempotent.
    #[napi]
    pub async fn stop(&self) -> Result<()> {
        let node = self.node.lock().recover().take();
        if let Some(node) = node {
            node.stop().await;
        }
        Ok(())
    }

    /// Abrupt stop, as if the process died (tests).
    #[napi]
    pub async fn kill(&self) -> Result<()> {
        let node = self.node.lock().recover().take();
        if let Some(node) = node {
            node.kill().await;
        }
        Ok(())
    }

    /// The application's snapshot bytes for the point `index` of a `snapshotRequest`.
    #[napi]
    pub async fn provide_snapshot(&self, index: f64, data: Buffer) -> Result<()> {
        let data = data.to_vec();
        self.handle()?
            .provide_app_snapshot(index as u64, data)
            .await
            .map_err(engine_error)
    }

    /// Sets the URL of a peer (test clusters learn ephemeral ports after start).
    #[napi]
    pub fn set_peer_url(&self, peer: String, url: String) -> Result<()> {
        self.handle()?
            .set_peer_url(&peer, &url)
            .map_err(engine_error)
    }

    /// Drops all traffic to and from `peer` (fault injection).
    #[napi]
    pub fn block_peer(&self, peer: String) -> Result<()> {
        self.handle()?.faults().block(&peer);
        Ok(())
    }

    /// Blocks the driver for `ms`, as a disk stalled in fsync would (tests).
    #[napi]
    pub async fn stall_driver(&self, ms: u32) -> Result<()> {
        self.handle()?
            .stall_driver(Duration::from_millis(u64::from(ms)))
            .await
            .map_err(engine_error)
    }

    /// Fails the driver: `storage` (a write fails) or `panic` (an engine bug) (tests).
    #[napi]
    pub async fn inject_fault(&self, kind: String) -> Result<()> {
        let fault = match kind.as_str() {
            "storage" => crate::runtime::driver::InjectedFault::Storage,
            "panic" => crate::runtime::driver::InjectedFault::Panic,
            other => {
                return Err(engine_error(EngineError::Invalid(format!(
                    "unknown fault {other:?}"
                ))))
            }
        };
        self.handle()?
            .inject_fault(fault)
            .await
            .map_err(engine_error)
    }

    /// Lets all traffic through again.
    #[napi]
    pub fn clear_faults(&self) -> Result<()> {
        self.handle()?.faults().clear();
        Ok(())
    }
}

fn read_options(consistency: &str, timeout_ms: u32) -> Result<ReadOptions> {
    let consistency = match consistency {
        "linearizable" => Consistency::Linearizable,
        "lease" => Consistency::Lease,
        "local" => Consistency::Local,
        other => {
            return Err(engine_error(EngineError::Invalid(format!(
                "consistency must be 'linearizable', 'lease' or 'local', got {other:?}"
            ))))
        }
    };
    Ok(ReadOptions {
        consistency,
        timeout: ms(timeout_ms),
    })
}
