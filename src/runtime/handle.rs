//! [`NodeHandle`]: the cloneable way to talk to a running node from any task or thread.

use crate::sync::Recover;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::events::Role;
use crate::core::history::{ChangeHistory, Since};
use crate::core::requests::{Callback, Deadline, Reply, Waiter};
use crate::core::{Status, WriteOutcome};
use crate::error::{Error, Result};
use crate::runtime::driver::Request;
use crate::state_machine::{BatchOp, Command, KeyRecord, KvStore};
use crate::transport::{FaultFilter, TransportControl};

mod coordination;
mod operations;

/// Default deadline of a write, a read or a transfer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than a request's deadline a caller waits for the driver's answer.
const DRIVER_GRACE: Duration = Duration::from_secs(1);

/// How a write is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Give up after this long; the write may still commit later (outcome unknown).
    pub timeout: Duration,
    /// On a follower, forward to the leader (default) or fail with `NotLeader`.
    pub forward: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            timeout: DEFAULT_TIMEOUT,
            forward: true,
        }
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged anywhere before the read began (ReadIndex through
    /// the leader; works on followers).
    #[default]
    Linearizable,
    /// Served by a leader holding its lease without a network round trip (at its commit
    /// index, once applied); elsewhere as `Linearizable`. Relies on bounded clock drift
    /// between members.
    Lease,
    /// This node's applied state, possibly behind the leader.
    Local,
}

/// How a read is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    pub consistency: Consistency,
    /// Deadline of the ReadIndex round, when one is needed.
    pub timeout: Duration,
}

impl From<Consistency> for ReadOptions {
    fn from(consistency: Consistency) -> Self {
        ReadOptions {
            consistency,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Called at the end of each driver turn, and once the driver is gone: a caller of
/// [`NodeHandle::submit_write`] that gathers answers delivers them then, all of a turn at
/// once (see [`NodeHandle::on_turn_end`]).
#[derive(Default)]
pub(crate) struct TurnEnd(std::sync::Mutex<Option<TurnEndListener>>);

type TurnEndListener = Arc<dyn Fn() -> bool + Send + Sync>;

impl TurnEnd {
    /// Whether the listener handed answers to another thread.
    pub(crate) fn notify(&self) -> bool {
        let listener = self.0.lock().recover().clone();
        listener.is_some_and(|listener| listener())
    }
}

/// What a handle shares with every clone of it.
pub(crate) struct HandleState {
    pub name: String,
    pub requests: mpsc::Sender<Request>,
    pub status: watch::Receiver<Status>,
    pub kv: Arc<RwLock<KvStore>>,
    /// The changes applied lately (read under `kv`'s read lock).
    pub history: Arc<std::sync::Mutex<ChangeHistory>>,
    pub transport: TransportControl,
    pub addr: SocketAddr,
    pub url: String,
    /// This node's own advertised HTTP URL.
    pub http_url: Option<String>,
    pub applied_events: Arc<std::sync::atomic::AtomicBool>,
    pub members: Arc<RwLock<Vec<crate::core::health::MemberView>>>,
    pub session_deadlines: crate::core::SessionDeadlines,
    pub metrics: Arc<crate::runtime::metrics::NodeMetrics>,
    pub turn_end: Arc<TurnEnd>,
}

/// A cloneable handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<HandleState>,
}

impl NodeHandle {
    pub(crate) fn new(state: HandleState) -> Self {
        NodeHandle {
            inner: Arc::new(state),
        }
    }

    /// This member's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The URL peers should use for this node.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Where `member`'s application serves HTTP: this node's own `http_url`, or what the
    /// member advertised when it last connected here (a leader connects to every member).
    pub fn http_url_of(&self, member: &str) -> Option<String> {
        if member == self.inner.name {
            self.inner.http_url.clone()
        } else {
            self.inner.transport.http_url(member)
        }
    }

    /// Members as this node sees them: health, match index and last contact are known on
    /// the leader (refreshed every heartbeat); elsewhere they are unknown.
    pub fn members(&self) -> Vec<crate::core::health::MemberView> {
        self.inner.members.read().recover().clone()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// Waits until `done` holds for the status, or fails with `Timeout` (or `Stopped`).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Result<Status> {
        let mut rx = self.inner.status.clone();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                {
                    let status = rx.borrow_and_update();
                    if done(&status) {
                        return Ok(status.clone());
                    }
                    if status.role == Role::Stopped {
                        return Err(Error::Stopped);
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Stopped);
                }
            }
        })
        .await;
        waited.unwrap_or(Err(Error::Timeout {
            ms: timeout.as_millis() as u64,
            unknown_outcome: false,
        }))
    }

    /// The leader's name, once one is known.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<String> {
        let status = self.wait_for(timeout, |s| s.leader.is_some()).await?;
        Ok(status.leader.unwrap_or_default())
    }

    /// Sends a request to the driver and waits for its answer within `timeout`.
    async fn ask<T>(
        &self,
        timeout: Duration,
        unknown_outcome: bool,
        request: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        // Never waits for room: a full queue refuses at once (nothing was done), through
        // the reply.
        self.submit(request(tx.into()));
        let answer = with_timeout(timeout, unknown_outcome, async {
            rx.await.unwrap_or(Err(Error::Stopped))
        });
        answer.await
    }

    /// Sends a request that the driver answers by its deadline (it alone knows whether the
    /// request reached a leader); waits a little longer in case the driver is stuck.
    async fn ask_by<T>(
        &self,
        timeout: Duration,
        unknown_outcome: bool,
        request: impl FnOnce(Waiter<T>) -> Request,
    ) -> Result<T> {
        let deadline = Deadline::after(timeout);
        self.ask(timeout + DRIVER_GRACE, unknown_outcome, |reply| {
            request(Waiter { reply, deadline })
        })
        .await
    }

    /// Replicates `command`; resolves once it is committed and applied on this node.
    pub async fn write(&self, command: Command, options: WriteOptions) -> Result<WriteOutcome> {
        let started = std::time::Instant::now();
        let outcome = self
            .ask_by(options.timeout, true, |waiter| Request::Propose {
                command,
                forward: options.forward,
                waiter,
            })
            .await;
        self.inner
            .metrics
            .observe_proposal(started.elapsed(), outcome.as_ref().map(|_| ()));
        outcome
    }

    /// Queues a write whose outcome goes to `answer`: called once, on the driver's thread
    /// (or at once, when the request queue refuses the write). No task and no timer per
    /// write, for a caller that gathers the answers of many (the binding settles them in one
    /// call into JS). The driver answers by the write's deadline.
    pub fn submit_write(
        &self,
        command: Command,
        options: WriteOptions,
        answer: impl FnOnce(Result<WriteOutcome>) + Send + 'static,
    ) {
        let started = std::time::Instant::now();
        let metrics = Arc::clone(&self.inner.metrics);
        let reply = Reply::Call(Callback::new(move |outcome: Result<WriteOutcome>| {
            metrics.observe_proposal(started.elapsed(), outcome.as_ref().map(|_| ()));
            answer(outcome);
        }));
        let waiter = Waiter {
            reply,
            deadline: Deadline::after(options.timeout),
        };
        self.submit(Request::Propose {
            command,
            forward: options.forward,
            waiter,
        });
    }

    /// Queues a read of `key` under `options` whose value goes to `answer`, as
    /// [`NodeHandle::submit_write`] does for writes.
    pub fn submit_read(
        &self,
        key: String,
        options: ReadOptions,
        answer: impl FnOnce(Result<Option<Vec<u8>>>) + Send + 'static,
    ) {
        if options.consistency == Consistency::Local {
            return answer(Ok(self.get_local(&key)));
        }
        let handle = self.clone();
        // Called once the read index is applied here: the local state is then current.
        let reply = Reply::Call(Callback::new(move |index: Result<u64>| {
            answer(index.map(|_| handle.get_local(&key)));
        }));
        let waiter = Waiter {
            reply,
            deadline: Deadline::after(options.timeout),
        };
        self.submit(Request::ReadIndex {
            waiter,
            lease: options.consistency == Consistency::Lease,
        });
    }

    /// Calls `listener` at the end of every turn of the driver (and once more after it has
    /// stopped, when requests still queued were answered `Stopped`): the callbacks of
    /// [`NodeHandle::submit_write`] and [`NodeHandle::submit_read`] answered in a turn have all
    /// run by then. Replaces the listener set before.
    ///
    /// The listener returns whether it handed answers to another thread: then the driver stays
    /// awake a moment for the callers' next requests instead of sleeping (see
    /// `runtime::stay_awake`).
    pub fn on_turn_end(&self, listener: impl Fn() -> bool + Send + Sync + 'static) {
        *self.inner.turn_end.0.lock().recover() = Some(Arc::new(listener));
    }

    /// Queues `request` without waiting; a full or closed queue answers it at once.
    fn submit(&self, request: Request) {
        if let Err(e) = self.inner.requests.try_send(request) {
            let (request, error) = match e {
                mpsc::error::TrySendError::Full(request) => (
                    request,
                    Error::Overloaded(format!(
                        "the driver's request queue is full ({} requests)",
                        self.inner.requests.max_capacity()
                    )),
                ),
                mpsc::error::TrySendError::Closed(request) => (request, Error::Stopped),
            };
            request.refuse(error);
        }
    }

    /// The node's counters, with the bytes its transport sent and received.
    pub fn metrics(&self) -> crate::runtime::metrics::MetricsSnapshot {
        let mut snapshot = self.inner.metrics.snapshot(self.inner.transport.stats());
        let kv = self.inner.kv.read().recover();
        let (held, waiting) = kv.locks().counts();
        snapshot.sessions = kv.sessions().len() as u64;
        snapshot.locks_held = held as u64;
        snapshot.lock_waiters = waiting as u64;
        snapshot
    }

    /// Sets `key` to `value`.
    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        options: WriteOptions,
    ) -> Result<WriteOutcome> {
        let command = Command::Set {
            key: key.to_string(),
            value: ByteBuf::from(value),
        };
        self.write(command, options).await
    }

    /// Deletes `key`; the outcome's `result.ok` says whether it existed.
    pub async fn delete(&self, key: &str, options: WriteOptions) -> Result<WriteOutcome> {
        let command = Command::Delete {
            key: key.to_string(),
        };
        self.write(command, options).await
    }

    /// Sets `key` to `next` (deletes it for `None`) if it holds `expected` (`None`: absent).
    pub async fn cas(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        next: Option<Vec<u8>>,
        options: WriteOptions,
    ) -> Result<WriteOutcome> {
        let command = Command::Cas {
            key: key.to_string(),
            expected: expected.map(ByteBuf::from),
            next: next.map(ByteBuf::from),
        };
        self.write(command, options).await
    }

    /// Applies `ops` atomically in one log entry.
    pub async fn batch(&self, ops: Vec<BatchOp>, options: WriteOptions) -> Result<WriteOutcome> {
        self.write(Command::Batch { ops }, options).await
    }

    /// Replicates opaque bytes for a state machine of the caller's own.
    pub async fn propose_raw(&self, data: Vec<u8>, options: WriteOptions) -> Result<WriteOutcome> {
        self.write(Command::Raw(ByteBuf::from(data)), options).await
    }

    /// A linearizable read point: once this resolves, the local state reflects every write
    /// acknowledged before the call.
    pub async fn read_barrier(&self, timeout: Duration) -> Result<u64> {
        self.ask_by(timeout, false, |waiter| Request::ReadIndex {
            waiter,
            lease: false,
        })
        .await
    }

    /// The value at `key`.
    pub async fn get(&self, key: &str, options: impl Into<ReadOptions>) -> Result<Option<Vec<u8>>> {
        self.barrier_for(options.into()).await?;
        Ok(self.get_local(key))
    }

    /// Waits until a read of the local state meets `consistency`.
    async fn barrier_for(&self, options: ReadOptions) -> Result<()> {
        match options.consistency {
            Consistency::Local => Ok(()),
            Consistency::Lease | Consistency::Linearizable => {
                let lease = options.consistency == Consistency::Lease;
                self.ask_by(options.timeout, false, |waiter| Request::ReadIndex {
                    waiter,
                    lease,
                })
                .await
                .map(|_| ())
            }
        }
    }

    /// The value at `key` in this node's applied state.
    pub fn get_local(&self, key: &str) -> Option<Vec<u8>> {
        self.read_kv(|kv| kv.get(key).map(<[u8]>::to_vec))
    }

    /// Pairs whose key starts with `prefix`, sorted by key.
    pub async fn entries(
        &self,
        prefix: &str,
        options: impl Into<ReadOptions>,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        self.barrier_for(options.into()).await?;
        Ok(self.read_kv(|kv| kv.range(prefix)))
    }

    /// The value at `key` with its revisions, and the session that owns it if it is ephemeral.
    pub async fn get_entry(
        &self,
        key: &str,
        options: impl Into<ReadOptions>,
    ) -> Result<Option<(KeyRecord, Option<u64>)>> {
        self.barrier_for(options.into()).await?;
        Ok(self.read_kv(|kv| kv.record(key).map(|r| (r.clone(), kv.owner_of(key)))))
    }

    /// At most `limit` keys under `prefix` that sort after `after`, in key order, with their
    /// values and revisions (see [`KvStore::page`]).
    pub async fn page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        options: impl Into<ReadOptions>,
    ) -> Result<Vec<(String, KeyRecord)>> {
        self.barrier_for(options.into()).await?;
        Ok(self.read_kv(|kv| kv.page(prefix, after, limit)))
    }

    /// What a watch of `prefix` from after index `from` gets before the live changes: the
    /// changes after `from` that this node applied (up to its last applied index), or the
    /// prefix's state when `from` is older than it keeps (see [`crate::core::history`]).
    /// Applied entries must already be reported (`set_applied_events(true)`) for the live
    /// changes to follow on with no gap.
    pub fn changes_since(&self, prefix: &str, from: u64) -> Since {
        let kv = self.inner.kv.read().recover();
        let mut history = self.inner.history.lock().recover();
        history.keep();
        history.since(from, prefix, &kv)
    }

    /// Keeps the changes this node applies from now on, for watches from an index (a node
    /// keeps none before its first watch: see [`crate::core::history`]).
    pub fn keep_history(&self) {
        self.inner.history.lock().recover().keep();
    }

    fn read_kv<T>(&self, read: impl FnOnce(&KvStore) -> T) -> T {
        read(&self.inner.kv.read().recover())
    }

    /// Changes the members through the leader (one change at a time, by joint consensus);
    /// resolves with the log index of the change once it is complete on this node (the joint
    /// configuration entered and left).
    pub async fn change_membership(
        &self,
        change: crate::MembershipChange,
        timeout: Duration,
    ) -> Result<u64> {
        self.ask_by(timeout, true, |waiter| Request::ChangeMembership {
            change,
            waiter,
        })
        .await
        .map(|outcome| outcome.index)
    }

    /// Hands leadership to `to` (or the most up-to-date voter); resolves with the new leader.
    pub async fn transfer_leadership(&self, to: Option<&str>, timeout: Duration) -> Result<String> {
        let to = to.map(str::to_string);
        self.ask(timeout, false, |reply| Request::Transfer { to, reply })
            .await
    }

    /// Stops the node: pending requests fail with `Stopped`, sockets close, the port is
    /// released. Idempotent.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .requests
            .send(Request::Stop { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        // Stopped already, or stopping from elsewhere: wait for it to finish.
        let _ = self
            .wait_for(Duration::from_secs(30), |s| s.role == Role::Stopped)
            .await;
    }

    /// Queues a request that the driver needs no answer to.
    async fn tell(&self, request: Request) -> Result<()> {
        self.inner
            .requests
            .send(request)
            .await
            .map_err(|_| Error::Stopped)
    }

    /// With app snapshots: hands over the application's state machine bytes for the
    /// snapshot point `index` of an [`crate::Event::SnapshotRequest`].
    pub async fn provide_app_snapshot(&self, index: u64, data: Vec<u8>) -> Result<()> {
        self.tell(Request::AppSnapshot { index, data }).await
    }

    /// Turns `Event::Applied` on (the default) or off. Off, the node skips copying each
    /// change for the event stream: worth it when nobody consumes applied entries.
    pub fn set_applied_events(&self, on: bool) {
        self.inner
            .applied_events
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the URL of `peer` (see [`crate::Config::peers`]).
    pub fn set_peer_url(&self, peer: &str, url: &str) -> Result<()> {
        self.inner.transport.set_peer_url(peer, url)
    }

    /// Traffic counters of this node's transport.
    pub fn transport_stats(&self) -> &crate::transport::TransportStats {
        self.inner.transport.stats()
    }

    /// Blocks this node's driver for `pause`, as a disk stalled in fsync would (tests).
    #[doc(hidden)]
    pub async fn stall_driver(&self, pause: Duration) -> Result<()> {
        self.tell(Request::Stall(pause)).await
    }

    /// Fails this node's driver as a broken disk or an engine bug would (tests).
    #[doc(hidden)]
    pub async fn inject_fault(&self, fault: crate::runtime::driver::InjectedFault) -> Result<()> {
        self.tell(Request::Fault(fault)).await
    }

    /// The fault switch of this node's transport (tests).
    pub fn faults(&self) -> &FaultFilter {
        self.inner.transport.faults()
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    unknown_outcome: bool,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(Error::Timeout {
            ms: timeout.as_millis() as u64,
            unknown_outcome,
        }))
}
