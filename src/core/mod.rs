//! The synchronous heart of a node: it owns `RawNode`, the state machine and every pending
//! request, and handles each Ready in the order the raft crate documents.
//!
//! It does no I/O but the log store's and knows nothing of sockets: the async driver feeds it
//! ticks, messages and requests and carries its output to the transport; the deterministic
//! tests feed it through an in-memory network instead. (It still reads the clock for the
//! lease, member health and deadlines.)
//!
//! One file per concern, each an `impl Core` block over the state declared here:
//! `inbound` (screening and stepping peers' messages), `writes` (admission, parking,
//! proposing, answering), `reads` (ReadIndex rounds), `leadership` (campaigns, transfers,
//! the lease, role events), `members` (the member directory, membership changes, health),
//! `snapshotting` (taking, adopting and installing snapshots), `sessions` (measuring,
//! expiring and keeping sessions), `apply` (committed entries to the state machine) and
//! `status` (what the node reports).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, ReadState, StateRole, INVALID_ID};

use crate::config::Config;
use crate::core::events::{AppliedEntry, Event, Role};
use crate::core::health::HealthTracker;
use crate::core::lease::Lease;
use crate::core::requests::{RequestIds, Waiter};
use crate::core::screen::{screen, Sender, Verdict};
use crate::core::snapshots::{SnapshotJob, SnapshotPoint};
use crate::error::{Error, Result};
use crate::ids::raft_id;
use crate::ids::validate_name;
use crate::membership::{decode_conf_change, MemberInfo, MembershipChange};
use crate::state_machine::{ApplyResult, Command, KvStore, SnapshotData};
use crate::storage::LogStore;
use crate::sync::Recover;

pub mod events;
pub mod health;
pub mod history;
pub mod lease;
pub mod requests;
pub mod screen;
pub mod snapshots;

mod apply;
mod commit_notice;
mod directory;
mod inbound;
mod leadership;
mod locks;
mod members;
mod reads;
mod sessions;
mod snapshotting;
mod status;
mod writes;

pub use sessions::{give_up_after, SessionDeadlines, CLOCK_DRIFT_PER_MILLE};
pub use writes::MAX_PARKED_BYTES;

pub use status::{Status, WriteOutcome};

pub use crate::core::requests::Reply;

/// The synchronous node state machine. See the module docs. Each field is an owner of one
/// concern; the methods that change it live in the concern's file.
pub struct Core<S: LogStore> {
    raw: RawNode<S>,
    name: String,
    id: u64,
    kv: Arc<RwLock<KvStore>>,
    /// The changes applied lately (written under `kv`'s write lock).
    history: Arc<std::sync::Mutex<history::ChangeHistory>>,
    max_proposal_bytes: usize,
    /// Peers prove who they are (a secret or TLS): what they say in their own name counts.
    peers_authenticated: bool,
    /// Request ids: this node's id and a sequence.
    ids: RequestIds,
    /// Ticks and the clock (see [`Timing`]).
    time: Timing,
    /// This node's writes: parked, or proposed and awaiting their entry.
    writes: writes::Writes,
    /// This node's linearizable reads: waiting to be sent, or in a ReadIndex round.
    reads: reads::Reads,
    /// This node's membership changes, until complete.
    changes: members::Changes,
    /// Who the members are and where they listen; whether this node is one.
    directory: directory::Directory,
    /// The leader's record of its peers, and the members table handles read.
    health: HealthTracker,
    /// The role and leader last reported, the lease, a transfer in progress.
    leadership: leadership::Leadership,
    /// Snapshot points: when the next is due, the one being taken, the newest stored.
    snapshots: snapshotting::Snapshots,
    /// Sessions' clocks, the leader's expiries, the sessions this node keeps alive.
    sessions: sessions::SessionKeeper,
    /// Grants of pending locks this leader proposed.
    locks: locks::LockKeeper,
    /// The commit index each follower was told (see [`commit_notice`]).
    commit_notice: commit_notice::CommitNotice,
    /// Events waiting for their turn to be delivered.
    outbox: Outbox,
}

/// Time as the core counts it: the ticks the driver (or a test) delivered, in units of
/// heartbeats and elections, and the clock the lease, health and deadlines read.
struct Timing {
    /// Where this core reads the time (see [`crate::clock`]).
    clock: crate::clock::Clock,
    ticks: u64,
    heartbeat_ticks: u64,
    election_ticks: u64,
    heartbeat: Duration,
    election: Duration,
}

/// Events raised outside the order of a Ready, held until their place in a batch.
#[derive(Default)]
struct Outbox {
    /// Delivered before anything else (a snapshot restored on start).
    initial: Vec<Event>,
    /// Raised between Readys (peer health on a tick), delivered with the next batch.
    deferred: Vec<Event>,
    /// Membership changes applied in this Ready, delivered after its applied entries.
    membership: Vec<Event>,
    /// Sessions of this node's that ended in this Ready, delivered after its applied entries.
    sessions: Vec<Event>,
    /// The application wants applied-entry events (shared with the handles).
    applied_wanted: Arc<AtomicBool>,
}

/// Entries in one append message, in bytes (but for a single larger entry).
pub(super) const MAX_APPEND_BYTES: u64 = 512 << 10;
/// Append messages in flight to one follower. Each carries [`MAX_APPEND_BYTES`] or one larger
/// entry, so a leader sends a follower far behind at most 16 of them (16 MiB of 1 MiB writes)
/// before it acknowledges, and the turn that copies them out of the log stays short. With 256,
/// it was the whole backlog of a follower 120 MiB behind in one turn; with 64, a debug build
/// of three nodes on two cores still delayed the leader's ticks past the other follower's
/// election timeout in 1 of 4 catch-ups (`sizes.rs`; 0 of 16 with 16). Small entries still go
/// thousands to a message, and a follower's window fills only while it persists: what waits
/// meanwhile leaves in the next, fuller append.
const MAX_INFLIGHT_APPENDS: usize = 16;

/// A follower heard from within this many election timeouts is active: the leader keeps the
/// entries it still needs when compacting (see `Core::entries_to_keep`).
const ACTIVE_ELECTIONS: u32 = 10;

/// Moves the entries applied so far into the event list, keeping log order around
/// snapshot events.
fn flush_applied(applied: &mut Vec<AppliedEntry>, events: &mut Vec<Event>) {
    if !applied.is_empty() {
        events.push(Event::Applied(std::mem::take(applied)));
    }
}

impl<S: LogStore> Core<S> {
    /// Records the commit index durably. Commit indexes learnt from a light ready are kept in
    /// memory only (a lost one is learnt again from the leader), so a leader's stored one
    /// lags; a node that stops cleanly records it, so that what its directory says is
    /// committed (`operations::replay`, a backup of the stopped member) is up to date.
    pub fn record_commit(&mut self) -> Result<()> {
        let hard_state = self.raw.raft.hard_state();
        let store = self.raw.mut_store();
        store.persist(None, &[], Some(&hard_state))?;
        store.sync()
    }

    /// A core for `config` over `store`, sharing its key-value state through `kv`.
    pub fn new(config: &Config, store: S, kv: Arc<RwLock<KvStore>>) -> Result<Self> {
        let id = raft_id(&config.name);
        let (tick, heartbeat_ticks, election_ticks) = config.ticks();
        let raft_config = raft::Config {
            id,
            heartbeat_tick: heartbeat_ticks,
            election_tick: election_ticks,
            pre_vote: config.pre_vote,
            check_quorum: config.check_quorum,
            max_size_per_msg: MAX_APPEND_BYTES,
            max_inflight_msgs: MAX_INFLIGHT_APPENDS,
            // Followers learn a new commit index from the next append, or a moment later
            // (see `commit_notice`).
            skip_bcast_commit: true,
            // Without jitter, the election timeout is exactly `election_tick` (a simulation
            // that must replay gives each node a timeout of its own instead).
            min_election_tick: election_ticks,
            max_election_tick: if config.election_jitter {
                2 * election_ticks
            } else {
                election_ticks + 1
            },
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| Error::Invalid(format!("raft configuration: {e}")))?;
        let logger = crate::logging::raft_bridge::raft_logger();
        // The state machine starts from the newest snapshot; raft re-applies what follows.
        let mut initial_events = Vec::new();
        let mut known_members = Vec::new();
        let mut conf_epoch = 0;
        let snapshot_index = match store.newest_snapshot() {
            Some(snapshot) => {
                let SnapshotData {
                    kv: restored,
                    app,
                    members,
                    conf_epoch: epoch,
                } = SnapshotData::decode(&snapshot.data).map_err(Error::Storage)?;
                known_members = members;
                conf_epoch = epoch;
                *kv.write().recover() = restored;
                let meta = snapshot.get_metadata();
                initial_events.push(Event::Snapshot {
                    index: meta.index,
                    term: meta.term,
                    bytes: snapshot.data.len() as u64,
                    restore: config.app_snapshots.then(|| app.unwrap_or_default()),
                });
                meta.index
            }
            None => 0,
        };
        let raft_config = raft::Config {
            applied: snapshot_index,
            ..raft_config
        };
        let raw = RawNode::new(&raft_config, store, &logger)
            .map_err(|e| Error::Storage(format!("cannot load the raft state: {e}")))?;
        let mut core = Core {
            raw,
            name: config.name.clone(),
            id,
            kv,
            history: Arc::new(std::sync::Mutex::new({
                let mut history = history::ChangeHistory::starting_at(snapshot_index);
                if config.record_changes {
                    history.keep();
                }
                history
            })),
            max_proposal_bytes: config.max_proposal_bytes,
            peers_authenticated: config.secret.is_some() || config.tls.is_some(),
            ids: RequestIds::new(id),
            time: Timing {
                clock: config.clock.clone(),
                ticks: 0,
                heartbeat_ticks: heartbeat_ticks as u64,
                election_ticks: election_ticks as u64,
                heartbeat: config.heartbeat,
                election: config.election_timeout,
            },
            writes: writes::Writes::new(config.max_pending_writes),
            reads: reads::Reads::default(),
            changes: members::Changes::default(),
            directory: directory::Directory::new(config, conf_epoch),
            health: HealthTracker::default(),
            leadership: leadership::Leadership::new(Lease::new(
                (tick * election_ticks as u32).saturating_sub(tick * 2),
                config.election_timeout,
                config.check_quorum,
            )),
            snapshots: snapshotting::Snapshots::new(config, snapshot_index),
            sessions: sessions::SessionKeeper::default(),
            locks: locks::LockKeeper::default(),
            commit_notice: commit_notice::CommitNotice::default(),
            outbox: Outbox {
                initial: initial_events,
                applied_wanted: Arc::new(AtomicBool::new(true)),
                ..Outbox::default()
            },
        };
        core.directory.learn(known_members);
        core.refresh_members();
        core.measure_sessions_from_now();
        core.leadership.role = core.current_role();
        Ok(core)
    }

    /// The changes this node applied lately, shared with its handles (see [`history`]).
    pub fn history(&self) -> Arc<std::sync::Mutex<history::ChangeHistory>> {
        Arc::clone(&self.history)
    }

    /// True when persisting blocks on the disk.
    pub fn is_durable(&self) -> bool {
        self.raw.store().is_durable()
    }

    /// Fsyncs of this node's log so far.
    pub fn log_syncs(&self) -> u64 {
        self.raw.store().syncs()
    }

    /// Whether a caller of this node awaits a write or a read.
    pub fn has_callers_waiting(&self) -> bool {
        !self.writes.is_empty() || !self.reads.is_empty()
    }

    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Advances logical time by one tick; every few ticks, retries unanswered reads and
    /// membership changes; answers the callers whose deadline passed.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.settle_transfer();
        self.time.ticks += 1;
        if self.time.ticks.is_multiple_of(self.time.heartbeat_ticks) {
            if self.raw.raft.state == StateRole::Leader {
                self.probe_lease();
            }
            self.evaluate_health();
        }
        if self
            .time
            .ticks
            .is_multiple_of(2 * self.time.heartbeat_ticks)
        {
            self.retry_reads();
        }
        if self.time.ticks.is_multiple_of(self.time.election_ticks) {
            self.retry_conf_changes();
        }
        self.continue_failover();
        self.keep_sessions();
        self.grant_pending_locks();
        self.tell_commit();
        self.expire(self.time.clock.now());
    }

    /// Answers every caller whose deadline passed: `NoLeader` for what never reached a
    /// leader, a timeout (outcome unknown) for what was proposed.
    fn expire(&mut self, now: Instant) {
        self.writes.expire(now);
        self.changes.expire(now);
        let leaderless = self.raw.raft.leader_id == INVALID_ID;
        self.reads.expire(now, leaderless);
    }

    /// Fails every pending request with `err` (on stop).
    pub fn fail_all(&mut self, err: Error) {
        self.writes.fail_all(&err);
        self.changes.fail_all(&err);
        self.reads.fail_all(&err);
        if let Some(reply) = self.leadership.transfer.take() {
            reply.send(Err(err));
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        let raft = &self.raw.raft;
        let (voters, learners) = self.directory.named();
        Status {
            name: self.name.clone(),
            // Live, as the term and the leader are (the role events follow at the end of the
            // turn): a status never shows this node as its own leader but a follower.
            role: self.current_role(),
            term: raft.term,
            leader: self.name_of(raft.leader_id),
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            snapshot_index: self.snapshots.index,
            voters,
            learners,
            lease_until: self.lease_until(),
            removed: self.directory.removed(),
        }
    }

    /// Handles whatever is ready: sends through `send`, persists, applies, answers requests.
    /// Returns the events of this turn. A storage failure is returned: the node must stop.
    pub fn handle_ready(&mut self, send: &mut dyn FnMut(Vec<Message>)) -> Result<Vec<Event>> {
        // A request this node forwards leaves in its own name: the raft crate keeps the first
        // sender of a request forwarded twice (follower to follower to leader, as after a
        // leadership change), and the leader closed the forwarder's connection as a forgery.
        let id = self.id;
        // The commit index each follower is told by what leaves (see `commit_notice`).
        let mut told = Vec::new();
        let send = &mut |mut messages: Vec<Message>| {
            for m in &mut messages {
                if m.from != id && crate::peer_messages::is_forwarded_request(m) {
                    m.from = id;
                }
            }
            told.extend(messages.iter().filter_map(commit_notice::told));
            send(messages)
        };
        self.propose_parked();
        self.send_reads();
        let mut events = std::mem::take(&mut self.outbox.deferred);
        let mut applied = Vec::new();
        if self.raw.has_ready() {
            let mut ready = self.raw.ready();
            // 1. Messages to peers: a leader may send them before it persists (the raft
            //    crate only puts here what is safe to send now).
            if !ready.messages().is_empty() {
                send(ready.take_messages());
            }
            // 2. A snapshot received from the leader replaces the log and the state machine
            //    before any later entry is applied.
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot(), &mut applied, &mut events)?;
            }
            // 3. Apply the newly committed entries.
            self.apply(ready.take_committed_entries(), &mut applied);
            // 4. Persist new entries and the hard state in one durable write (group commit).
            self.raw
                .mut_store()
                .persist(None, ready.entries(), ready.hs())?;
            // 5. Messages that had to wait for persistence (votes, append responses).
            if !ready.persisted_messages().is_empty() {
                send(ready.take_persisted_messages());
            }
            self.record_read_states(ready.take_read_states());
            // 6. Advance, then handle the light ready: commit index, messages, entries.
            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.raw.mut_store().set_commit(commit)?;
            }
            if !light.messages().is_empty() {
                send(light.take_messages());
            }
            self.apply(light.take_committed_entries(), &mut applied);
            self.raw.advance_apply();
            self.maybe_snapshot(&mut applied, &mut events)?;
        }
        self.commit_notice.observe(self.raw.raft.term, told);
        self.complete_reads();
        self.diff_leadership(&mut events);
        events.extend(self.lease_change());
        flush_applied(&mut applied, &mut events);
        events.append(&mut self.outbox.membership);
        events.append(&mut self.outbox.sessions);
        Ok(events)
    }

    /// Events to deliver before any other (taken once).
    pub fn take_initial_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.outbox.initial)
    }

    /// Events raised between Readys, plus a lease change: for a turn without a Ready.
    pub fn quiet_events(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.outbox.deferred);
        events.extend(self.lease_change());
        events
    }

    /// True when a Ready is waiting, or reads or writes wait to be sent.
    pub fn has_ready(&self) -> bool {
        self.reads.has_unsent() || self.can_propose_parked() || self.raw.has_ready()
    }
}

/// The entry that stands in the log for a membership change the leader refused.
fn refusal(error: &Error) -> Command {
    let reason = match error {
        Error::UnknownMember(name) => name.clone(),
        Error::TooLarge { size, max } => format!("{size}/{max}"),
        other => other.to_string(),
    };
    Command::Refused {
        code: error.code().to_string(),
        reason,
    }
}

/// True when `change` removes the member `id`.
fn removes(change: &ConfChangeV2, id: u64) -> bool {
    change.changes.iter().any(|c| {
        c.node_id == id && c.change_type == raft::eraftpb::ConfChangeType::RemoveNode as i32
    })
}
