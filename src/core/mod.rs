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
//! `snapshotting` (taking, adopting and installing snapshots), `apply` (committed entries
//! to the state machine) and `status` (what the node reports).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, ReadState, StateRole, INVALID_ID};

use crate::config::Config;
use crate::core::events::{AppliedEntry, Event, Role};
use crate::core::health::{Health, HealthTracker, MemberView};
use crate::core::lease::Lease;
use crate::core::requests::{RequestIds, Waiter};
use crate::core::screen::{screen, Sender, Verdict};
use crate::core::snapshots::{SnapshotJob, SnapshotPoint};
use crate::error::{Error, Result};
use crate::ids::raft_id;
use crate::ids::validate_name;
use crate::membership::{MemberInfo, MembershipChange};
use crate::state_machine::{ApplyResult, Command, KvStore, SnapshotData};
use crate::storage::LogStore;
use crate::sync::Recover;

pub mod events;
pub mod health;
pub mod lease;
pub mod requests;
pub mod screen;
pub mod snapshots;

mod apply;
mod inbound;
mod leadership;
mod members;
mod reads;
mod snapshotting;
mod status;
mod writes;

pub use writes::{MAX_PARKED_BYTES, MAX_PENDING_WRITES};

pub use status::{Status, WriteOutcome};

pub use crate::core::requests::Reply;

/// The synchronous node state machine. See the module docs.
pub struct Core<S: LogStore> {
    raw: RawNode<S>,
    name: String,
    id: u64,
    names: HashMap<u64, String>,
    kv: Arc<RwLock<KvStore>>,
    max_proposal_bytes: usize,
    heartbeat_ticks: u64,
    election_ticks: u64,
    ticks: u64,
    ids: RequestIds,
    /// This node's writes: parked, or proposed and awaiting their entry.
    writes: writes::Writes,
    /// This node's membership changes, until complete.
    changes: members::Changes,
    /// This node's linearizable reads: waiting to be sent, or in a ReadIndex round.
    reads: reads::Reads,
    transfer: Option<Reply<String>>,
    leader: u64,
    role: Role,
    lease: Lease,
    applied_events: Arc<AtomicBool>,
    /// Member names, refreshed on every configuration change.
    members: (Arc<[String]>, Arc<[String]>),
    snapshot_every: u64,
    /// The snapshot point last taken or requested (the next is due `snapshot_every` later).
    last_snapshot: u64,
    /// Index of the newest snapshot stored, installed or restored.
    snapshot_index: u64,
    app_snapshots: bool,
    /// With app snapshots: the state captured at a snapshot point, waiting for the
    /// application's bytes.
    pending_snapshot: Option<SnapshotPoint>,
    /// A snapshot of this node's state to encode and write, waiting for the driver.
    snapshot_job: Option<SnapshotJob>,
    /// The driver runs a snapshot job (one at a time).
    snapshot_running: bool,
    /// Events to deliver before anything else (a snapshot restored on start).
    initial_events: Vec<Event>,
    /// Events raised between Readys (peer health on a tick), delivered with the next batch.
    deferred: Vec<Event>,
    health: HealthTracker,
    /// Members as this node sees them, refreshed every heartbeat; read by handles.
    members_view: Arc<RwLock<Vec<MemberView>>>,
    heartbeat: Duration,
    election: Duration,
    /// Peers prove who they are (a secret or TLS): what they say in their own name counts.
    peers_authenticated: bool,
    /// Where this core reads the time (see [`crate::clock`]).
    clock: crate::clock::Clock,
    /// Member URLs known here (configuration, snapshots, membership changes).
    urls: HashMap<u64, String>,
    /// URLs learnt since the transport last took them.
    peer_updates: Vec<(String, String)>,
    /// Membership changes applied in this Ready, delivered after its applied entries.
    membership_events: Vec<Event>,
    /// Take a snapshot at the next opportunity, whatever `snapshot_every` says.
    force_snapshot: bool,
    /// Index of the last membership change that took effect (replicated state: every
    /// member computes the same value, and snapshots carry it). A change carries the epoch
    /// it was proposed in and is skipped if another took effect first, so a change
    /// proposed twice (retried after a drop) never applies twice.
    conf_epoch: u64,
    /// This node was a member of the configuration at some point (a joining node is not,
    /// until it is added).
    was_member: bool,
    /// This node has been removed from the configuration.
    removed: bool,
    /// Raft ids of every member (voters, learners, either side of a joint configuration),
    /// and how often they were refreshed.
    member_ids: Vec<u64>,
    members_version: u64,
}

/// Entries in one append message, in bytes (but for a single larger entry).
const MAX_APPEND_BYTES: u64 = 512 << 10;
/// Append messages in flight to one follower. With [`MAX_APPEND_BYTES`], a leader sends a
/// follower far behind at most 32 MiB before it acknowledges: the turn that copies them out
/// of the log stays short (with 1 MiB and 256, it was the whole backlog of a follower 120 MiB
/// behind, in one turn, and the other follower missed heartbeats). Small entries still go
/// thousands to a message.
const MAX_INFLIGHT_APPENDS: usize = 64;

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
        let mut names: HashMap<u64, String> = config
            .peers
            .keys()
            .map(|name| (raft_id(name), name.clone()))
            .collect();
        names.insert(id, config.name.clone());
        let urls: HashMap<u64, String> = config
            .peers
            .iter()
            .filter(|(_, url)| !url.is_empty())
            .map(|(name, url)| (raft_id(name), url.clone()))
            .collect();
        let mut core = Core {
            raw,
            name: config.name.clone(),
            id,
            names,
            kv,
            max_proposal_bytes: config.max_proposal_bytes,
            heartbeat_ticks: heartbeat_ticks as u64,
            election_ticks: election_ticks as u64,
            ticks: 0,
            ids: RequestIds::new(id),
            writes: writes::Writes::default(),
            changes: members::Changes::default(),
            reads: reads::Reads::default(),
            transfer: None,
            leader: INVALID_ID,
            role: Role::Follower,
            applied_events: Arc::new(AtomicBool::new(true)),
            members: (Arc::from([]), Arc::from([])),
            snapshot_every: config.snapshot_every,
            last_snapshot: snapshot_index,
            snapshot_index,
            app_snapshots: config.app_snapshots,
            pending_snapshot: None,
            snapshot_job: None,
            snapshot_running: false,
            initial_events,
            deferred: Vec::new(),
            health: HealthTracker::default(),
            members_view: Arc::new(RwLock::new(Vec::new())),
            heartbeat: config.heartbeat,
            election: config.election_timeout,
            peers_authenticated: config.secret.is_some() || config.tls.is_some(),
            clock: config.clock.clone(),
            urls,
            peer_updates: Vec::new(),
            membership_events: Vec::new(),
            force_snapshot: false,
            conf_epoch,
            was_member: false,
            removed: false,
            member_ids: Vec::new(),
            members_version: 0,
            lease: Lease::new(
                (tick * election_ticks as u32).saturating_sub(tick * 2),
                config.election_timeout,
                config.check_quorum,
            ),
        };
        core.learn_members(known_members);
        core.track_membership();
        core.role = core.current_role();
        core.members = core.member_names();
        core.evaluate_health();
        Ok(core)
    }

    /// True when persisting blocks on the disk.
    pub fn is_durable(&self) -> bool {
        self.raw.store().is_durable()
    }

    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name of a raft id, as far as this node knows it.
    pub fn name_of(&self, id: u64) -> Option<String> {
        (id != INVALID_ID).then(|| {
            self.names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("#{id}"))
        })
    }

    /// Advances logical time by one tick; every few ticks, retries unanswered reads and
    /// membership changes; answers the callers whose deadline passed.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        if self.ticks.is_multiple_of(self.heartbeat_ticks) {
            if self.raw.raft.state == StateRole::Leader {
                self.probe_lease();
            }
            self.evaluate_health();
        }
        if self.ticks.is_multiple_of(2 * self.heartbeat_ticks) {
            self.retry_reads();
        }
        if self.ticks.is_multiple_of(self.election_ticks) {
            self.retry_conf_changes();
        }
        self.expire(self.clock.now());
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
        if let Some(reply) = self.transfer.take() {
            let _ = reply.send(Err(err));
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        let raft = &self.raw.raft;
        let (voters, learners) = self.members.clone();
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
            snapshot_index: self.snapshot_index,
            voters,
            learners,
            lease_until: self.lease_until(),
            removed: self.removed,
        }
    }

    /// Handles whatever is ready: sends through `send`, persists, applies, answers requests.
    /// Returns the events of this turn. A storage failure is returned: the node must stop.
    pub fn handle_ready(&mut self, send: &mut dyn FnMut(Vec<Message>)) -> Result<Vec<Event>> {
        // A request this node forwards leaves in its own name: the raft crate keeps the first
        // sender of a request forwarded twice (follower to follower to leader, as after a
        // leadership change), and the leader closed the forwarder's connection as a forgery.
        let id = self.id;
        let send = &mut |mut messages: Vec<Message>| {
            for m in &mut messages {
                if m.from != id && crate::peer_messages::is_forwarded_request(m) {
                    m.from = id;
                }
            }
            send(messages)
        };
        self.propose_parked();
        self.send_reads();
        let mut events = std::mem::take(&mut self.deferred);
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
        self.complete_reads();
        self.diff_leadership(&mut events);
        events.extend(self.lease_change());
        flush_applied(&mut applied, &mut events);
        events.append(&mut self.membership_events);
        Ok(events)
    }

    /// Events to deliver before any other (taken once).
    pub fn take_initial_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.initial_events)
    }

    /// Events raised between Readys, plus a lease change: for a turn without a Ready.
    pub fn quiet_events(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.deferred);
        events.extend(self.lease_change());
        events
    }

    /// True when a Ready is waiting (or reads wait to be sent).
    pub fn has_ready(&self) -> bool {
        self.reads.has_unsent() || self.raw.has_ready()
    }
}

/// The conf change an entry carries (a V1 change is read as the single change it is).
fn decode_conf_change(entry: &Entry) -> std::result::Result<ConfChangeV2, String> {
    use prost::Message as _;
    let data = entry.data.as_slice();
    if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
        return ConfChangeV2::decode(data).map_err(|e| e.to_string());
    }
    ConfChange::decode(data)
        .map(|cc| ConfChangeV2 {
            changes: vec![raft::eraftpb::ConfChangeSingle {
                change_type: cc.change_type,
                node_id: cc.node_id,
            }],
            context: cc.context,
            ..Default::default()
        })
        .map_err(|e| e.to_string())
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
