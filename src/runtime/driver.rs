//! The driver: one tokio task per node, the only owner of the [`Core`] (and so of RawNode).
//!
//! Each turn waits for one thing (requests from handles, frames from peers, or the tick),
//! takes whatever else of the same kind is already waiting, feeds it to the core, and then
//! handles the Ready: so a burst of proposals becomes one Ready, one durable write and one
//! event batch. The synchronous part of a turn runs under `catch_unwind`: should the raft
//! crate panic on something we failed to refuse, this node stops with an error event and the
//! process lives on.

use crate::sync::Recover;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::core::events::Event;
use crate::core::requests::Waiter;
use crate::core::{Core, Reply, Status, WriteOutcome};
use crate::error::Error;
use crate::peer_messages::Delivery;
use crate::runtime::stay_awake::StayAwake;
use crate::state_machine::Command;
use crate::storage::LogStore;
use crate::transport::{Inbound, Transport};

/// A turn that takes inbound frames of this many bytes is a long one (see `run_turn`).
const LONG_TURN_BYTES: usize = 1 << 20;
/// A turn that took this long marks the driver busy: its next turn counts as a long one.
const LONG_TURN: Duration = Duration::from_millis(2);
/// Most requests or inbound frames taken in one turn.
const MAX_PER_TURN: usize = 1024;
/// Inbound frames are taken in one turn up to about this many bytes: a follower catching up
/// receives appends far faster than it can persist and apply them, and one turn that took
/// them all would keep its ticks (and, in one process, other nodes) waiting for seconds.
const MAX_INBOUND_BYTES_PER_TURN: usize = 8 << 20;

/// What a handle asks of the driver.
pub(crate) enum Request {
    Propose {
        command: Command,
        forward: bool,
        waiter: Waiter<WriteOutcome>,
    },
    ReadIndex {
        waiter: Waiter<u64>,
        /// A leader holding its lease may answer without a round trip.
        lease: bool,
    },
    Transfer {
        to: Option<String>,
        reply: Reply<String>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
    AppSnapshot {
        index: u64,
        data: Vec<u8>,
    },
    ChangeMembership {
        change: crate::membership::MembershipChange,
        waiter: Waiter<WriteOutcome>,
    },
    /// The state at the applied index, for a backup.
    Capture {
        reply: Reply<crate::core::snapshots::SnapshotPoint>,
    },
    /// Blocks the driver, as a disk stalled in fsync would (tests).
    Stall(Duration),
    /// Fails the driver's turn as a broken disk or an engine bug would (tests).
    Fault(InjectedFault),
}

impl Request {
    /// Answers a request that never reached the driver with `error` (requests without an
    /// answer are dropped).
    pub(crate) fn refuse(self, error: Error) {
        match self {
            Request::Propose { waiter, .. } | Request::ChangeMembership { waiter, .. } => {
                waiter.send(Err(error))
            }
            Request::ReadIndex { waiter, .. } => waiter.send(Err(error)),
            Request::Transfer { reply, .. } => reply.send(Err(error)),
            Request::Capture { reply } => reply.send(Err(error)),
            Request::Stop { .. }
            | Request::AppSnapshot { .. }
            | Request::Stall(_)
            | Request::Fault(_) => {}
        }
    }
}

/// A fault a test injects into the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// The store's write fails (`ERR_STORAGE`).
    Storage,
    /// The engine panics (`ERR_INTERNAL`).
    Panic,
}

/// What one turn of the loop brought.
enum Turn {
    Requests(Vec<Request>),
    Frames(Vec<Inbound>),
    Reports(Vec<Delivery>),
    Tick,
    LeaseExpired,
    /// Followers are due to learn the commit index (see `Core::tell_commit`).
    TellCommit,
    /// A snapshot job ended.
    Snapshot(crate::Result<raft::eraftpb::Snapshot>),
}

pub(crate) struct Driver<S: LogStore> {
    /// Told at the end of every turn (see [`NodeHandle::on_turn_end`](crate::NodeHandle::on_turn_end)).
    pub turn_end: Arc<crate::runtime::handle::TurnEnd>,
    pub core: Core<S>,
    pub transport: Transport,
    pub requests: mpsc::Receiver<Request>,
    pub inbound: crate::transport::InboundReceivers,
    pub reports: mpsc::UnboundedReceiver<Delivery>,
    pub events: mpsc::UnboundedSender<Vec<Event>>,
    pub status: watch::Sender<Status>,
    pub tick: Duration,
    pub lease_log: Option<crate::config::LeaseLog>,
    /// The membership version last given to the transport.
    pub members_version: u64,
    /// Role, term and leader of the status last published (see `Core::leadership`).
    pub published_leadership: (crate::core::events::Role, u64, u64),
    /// Elections and leader changes are counted from the events.
    pub metrics: std::sync::Arc<crate::runtime::metrics::NodeMetrics>,
    /// Snapshot jobs run off the driver's thread; their outcomes come back here.
    pub snapshots: SnapshotRunner,
    /// The last turn was a long one (see `run_turn`).
    pub busy: bool,
}

/// Runs the core's snapshot jobs on the blocking pool, one at a time.
pub(crate) struct SnapshotRunner {
    done_tx: mpsc::UnboundedSender<crate::Result<raft::eraftpb::Snapshot>>,
    done: mpsc::UnboundedReceiver<crate::Result<raft::eraftpb::Snapshot>>,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl SnapshotRunner {
    pub(crate) fn new() -> SnapshotRunner {
        let (done_tx, done) = mpsc::unbounded_channel();
        SnapshotRunner {
            done_tx,
            done,
            running: None,
        }
    }

    /// Starts `job` on the blocking pool, in this node's log context.
    fn start(&mut self, job: crate::core::snapshots::SnapshotJob) {
        let done = self.done_tx.clone();
        let log = crate::logging::current();
        self.running = Some(tokio::task::spawn_blocking(move || {
            let outcome = crate::logging::within_sync(log, || job.run());
            let _ = done.send(outcome);
        }));
    }

    /// Waits for a job under way (a stopping node leaves no writer behind in its directory).
    async fn finish(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }
}

impl<S: LogStore> Driver<S> {
    /// Runs until a stop request, until every handle is gone, or until a fatal fault.
    pub async fn run(mut self) {
        let initial = self.core.take_initial_events();
        if !initial.is_empty() {
            self.publish(initial);
        }
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_reply = None;
        let mut failed = false;
        // The lease's timer, armed at the earliest deadline seen: a lease extended meanwhile
        // re-arms it when it fires (one timer operation per lease, not one per turn).
        let lease_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(lease_timer);
        let mut lease_armed: Option<std::time::Instant> = None;
        let notice_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(notice_timer);
        let mut notice_armed: Option<std::time::Instant> = None;
        let mut stay_awake = StayAwake::default();
        'run: loop {
            if let Some(until) = self.core.lease_until() {
                if lease_armed.is_none_or(|armed| until < armed) {
                    lease_timer.as_mut().reset(until.into());
                    lease_armed = Some(until);
                }
            }
            let notice_due = self.core.commit_notice_due();
            if notice_due != notice_armed {
                if let Some(due) = notice_due {
                    notice_timer.as_mut().reset(due.into());
                }
                notice_armed = notice_due;
            }
            // Usually one turn; a burst of bulk frames is preceded by a turn of its own for
            // the light frames waiting meanwhile, so that their answers (heartbeat and vote
            // responses) leave before the bulk is persisted and applied.
            let mut turns = Vec::new();
            let awake = stay_awake.is_awake(std::time::Instant::now());
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(first) => {
                        stay_awake.requests_arrived(std::time::Instant::now());
                        turns.push(Turn::Requests(drain(first, &mut self.requests)));
                    }
                    None => break,
                },
                // Runnable again once every other task has run and the sockets were polled.
                () = tokio::task::yield_now(), if awake => continue,
                Some(first) = self.inbound.light.recv() => {
                    turns.push(Turn::Frames(drain(first, &mut self.inbound.light)));
                }
                Some(first) = self.inbound.bulk.recv() => {
                    if let Ok(light) = self.inbound.light.try_recv() {
                        turns.push(Turn::Frames(drain(light, &mut self.inbound.light)));
                    }
                    turns.push(Turn::Frames(drain_frames(first, &mut self.inbound.bulk)));
                }
                Some(first) = self.reports.recv() => {
                    let mut reports = vec![first];
                    while let Ok(more) = self.reports.try_recv() {
                        reports.push(more);
                    }
                    turns.push(Turn::Reports(reports));
                }
                Some(outcome) = self.snapshots.done.recv() => turns.push(Turn::Snapshot(outcome)),
                _ = ticker.tick() => turns.push(Turn::Tick),
                // Wake at the very instant a lease runs out, not a tick later.
                () = &mut lease_timer, if lease_armed.is_some() => {
                    lease_armed = None;
                    turns.push(Turn::LeaseExpired);
                }
                () = &mut notice_timer, if notice_armed.is_some() => {
                    notice_armed = None;
                    turns.push(Turn::TellCommit);
                }
            };
            for turn in turns {
                match self.run_turn(turn) {
                    Ok(None) => {}
                    Ok(Some(reply)) => {
                        stop_reply = Some(reply);
                        break 'run;
                    }
                    Err(e) => {
                        self.fail(e);
                        failed = true;
                        break 'run;
                    }
                }
            }
            // With writes or reads still in flight, the engine has work coming; once it
            // answered them all, only the callers can bring the next.
            if self.turn_end.notify() && !self.core.has_callers_waiting() {
                stay_awake.answered(std::time::Instant::now());
            }
        }
        self.core.fail_all(Error::Stopped);
        self.snapshots.finish().await;
        if !failed {
            if let Err(e) = self.core.record_commit() {
                tracing::warn!("could not record the commit index on stop: {e}");
            }
        }
        let stopped = self.status.borrow().clone().stopped();
        // The lease ends here, before the listener closes: from then on the followers may
        // find this node's address refusing them and elect another leader at once (see
        // `Core::leader_gone`), and no read may still be served under this node's lease.
        let mut withdrawn = self.status.borrow().clone();
        withdrawn.lease_until = None;
        self.publish_status(withdrawn);
        self.transport.shutdown().await;
        self.status.send_replace(stopped);
        if let Some(reply) = stop_reply {
            let _ = reply.send(());
        }
        // Requests still queued are answered `Stopped` as the queue goes.
        drop(self.requests);
        self.turn_end.notify();
    }

    /// Runs one turn, catching a panic of the engine as an internal fault.
    fn run_turn(&mut self, turn: Turn) -> Result<Option<oneshot::Sender<()>>, Error> {
        // A long turn (fsync, megabytes of entries to persist and apply, or a leader's burst
        // of appends to a follower far behind) lets the runtime move the other tasks of its
        // thread elsewhere meanwhile: they may be other nodes' drivers and their heartbeats.
        // What a turn will cost is known for some (durable, bulk frames); for the rest, a
        // driver whose last turn was long is taken to be busy.
        let long = self.core.is_durable()
            || self.busy
            || matches!(&turn, Turn::Frames(frames)
                if frames.iter().map(|f| f.bytes).sum::<usize>() >= LONG_TURN_BYTES);
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let started = std::time::Instant::now();
        let outcome = if long && multi_thread {
            tokio::task::block_in_place(|| catch_unwind(AssertUnwindSafe(|| self.turn(turn))))
        } else {
            catch_unwind(AssertUnwindSafe(|| self.turn(turn)))
        };
        self.busy = started.elapsed() >= LONG_TURN;
        outcome.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::Internal(format!("node stopped: {why}")))
        })
    }

    /// Publishes `status` for readers (if it changed), and logs a lease that became visible.
    fn publish_status(&mut self, status: Status) {
        self.published_leadership = self.core.leadership();
        let until = status.lease_until;
        let mut lease_changed = false;
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            lease_changed = current.lease_until != until;
            if changed {
                *current = status;
            }
            changed
        });
        if let (true, Some(log)) = (lease_changed, &self.lease_log) {
            let record = crate::config::LeaseRecord {
                at: std::time::Instant::now(),
                until,
            };
            log.lock().recover().push(record);
        }
    }

    /// Feeds one turn to the core and handles the Ready. Returns a stop reply to stop.
    fn turn(&mut self, turn: Turn) -> Result<Option<oneshot::Sender<()>>, Error> {
        let mut stop = None;
        match turn {
            Turn::Tick => self.core.tick(),
            Turn::LeaseExpired => {}
            Turn::TellCommit => self.core.tell_commit(),
            Turn::Snapshot(outcome) => {
                self.snapshots.running = None;
                let events = self.core.finish_snapshot(outcome)?;
                if !events.is_empty() {
                    self.publish(events);
                }
            }
            Turn::Reports(reports) => {
                for report in reports {
                    self.core.report_delivery(report);
                }
            }
            Turn::Frames(frames) => {
                for frame in frames {
                    for message in frame.messages {
                        if let Err(reason) = self.core.step(message) {
                            tracing::warn!(peer = %frame.from, "refused a raft message: {reason}");
                            frame.reject.send_replace(Some(reason));
                            break;
                        }
                    }
                }
            }
            Turn::Requests(requests) => {
                for request in requests {
                    match request {
                        Request::Propose {
                            command,
                            forward,
                            waiter,
                        } => self.core.propose(command, forward, waiter),
                        Request::ReadIndex { waiter, lease } => self.core.read_index(waiter, lease),
                        Request::Transfer { to, reply } => self.core.transfer_leader(to, reply),
                        Request::Capture { reply } => reply.send(self.core.capture()),
                        Request::Stop { reply } => stop = Some(reply),
                        Request::Stall(pause) => stall(pause),
                        Request::Fault(InjectedFault::Storage) => {
                            return Err(Error::Storage("injected fault: the write failed".into()))
                        }
                        Request::Fault(InjectedFault::Panic) => panic!("injected fault"),
                        Request::ChangeMembership { change, waiter } => {
                            self.core.change_membership(change, waiter)
                        }
                        Request::AppSnapshot { index, data } => {
                            self.core.provide_app_snapshot(index, data)
                        }
                    }
                }
            }
        }
        // A lease can run out on a quiet tick: check it every turn, not only with a Ready.
        let had_ready = self.core.has_ready();
        let events = if had_ready {
            // Peers hear from this node in a new role as soon as the Ready's messages leave:
            // its status shows the role first (a leader handing over on stop() learned of its
            // successor, and resolved, before the successor's status said leader).
            if self.core.leadership() != self.published_leadership {
                self.publish_status(self.core.status());
            }
            let transport = &self.transport;
            self.core
                .handle_ready(&mut |messages| transport.send(messages))?
        } else {
            self.core.quiet_events()
        };
        if had_ready || !events.is_empty() {
            self.publish_status(self.core.status());
        }
        // The transport admits members only, and chunked messages from the leader only.
        let control = self.transport.control();
        control.set_leader(self.core.leader_id());
        let (version, ids) = self.core.member_ids();
        if version != self.members_version {
            control.set_members(ids.iter().copied());
            self.members_version = version;
        }
        for (peer, url) in self.core.take_peer_updates() {
            // A URL given to the transport (configuration, `set_peer_url`) is newer than one
            // replayed from the log: the log only fills in what is unknown.
            if let Err(e) = control.set_peer_url_if_unknown(&peer, &url) {
                tracing::warn!(%peer, "ignoring a member's address: {e}");
            }
        }
        if !events.is_empty() {
            self.publish(events);
        }
        if let Some(job) = self.core.take_snapshot_job() {
            self.snapshots.start(job);
        }
        self.metrics.observe_log_syncs(self.core.log_syncs());
        self.metrics
            .observe_sessions_expired(self.core.sessions_expired());
        Ok(stop)
    }

    /// Hands one Ready's events to the application (one delivery per batch).
    fn publish(&self, events: Vec<Event>) {
        self.metrics.observe_events(&events);
        let _ = self.events.send(events);
    }

    fn fail(&mut self, error: Error) {
        tracing::error!("{error}");
        self.publish(vec![Event::Failed {
            code: error.code(),
            message: error.to_string(),
        }]);
        self.core.fail_all(error);
    }
}

/// Blocks this thread for `pause` (a test's stalled disk), letting a multi-threaded runtime
/// move its other tasks elsewhere meanwhile.
fn stall(pause: Duration) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| std::thread::sleep(pause));
    } else {
        std::thread::sleep(pause);
    }
}

/// The first item and whatever else is already queued, up to [`MAX_PER_TURN`].
fn drain<T>(first: T, rx: &mut mpsc::Receiver<T>) -> Vec<T> {
    let mut items = vec![first];
    while items.len() < MAX_PER_TURN {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
    items
}

/// The first frame and whatever else is already queued, up to [`MAX_PER_TURN`] frames and
/// [`MAX_INBOUND_BYTES_PER_TURN`] bytes.
fn drain_frames(first: Inbound, rx: &mut mpsc::Receiver<Inbound>) -> Vec<Inbound> {
    let mut bytes = first.bytes;
    let mut frames = vec![first];
    while frames.len() < MAX_PER_TURN && bytes < MAX_INBOUND_BYTES_PER_TURN {
        match rx.try_recv() {
            Ok(frame) => {
                bytes += frame.bytes;
                frames.push(frame);
            }
            Err(_) => break,
        }
    }
    frames
}
