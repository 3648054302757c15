//! The synchronous heart of a node: it owns `RawNode`, the state machine and every pending
//! request, and handles each Ready in the order the raft crate documents.
//!
//! It does no I/O but the log store's and knows nothing of sockets or time: the async driver
//! feeds it ticks, messages and requests and carries its output to the transport; the
//! deterministic tests feed it through an in-memory network instead.

use crate::sync::Recover;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, ReadState, StateRole, INVALID_ID};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{AppliedEntry, Event, Role};
use crate::health::{Health, HealthTracker, MemberView};
use crate::ids::raft_id;
use crate::ids::validate_name;
use crate::kv::{ApplyResult, Command, KvStore, SnapshotData};
use crate::lease::Lease;
use crate::membership::{MemberInfo, MembershipChange};
use crate::requests::{RequestIds, Waiter};
use crate::screen::{screen, Sender, Verdict};
use crate::snapshots::{SnapshotJob, SnapshotPoint};
use crate::storage::LogStore;

/// Where a request's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// A committed and applied write, as its proposer learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub index: u64,
    pub term: u64,
    /// For `Cas`: whether it matched. For `Delete`: whether the key existed.
    pub ok: bool,
    /// For `Cas`: the value after the command. For `Set`/`Delete`: the previous value.
    pub value: Option<Vec<u8>>,
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
    /// then no other node can have been elected. Read through [`Status::is_leader`], which
    /// checks the instant when asked (a stalled driver cannot stretch the lease).
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

/// Read requests waiting for a ReadIndex answer and then for the applied index to reach it.
/// Requests that arrive in one driver turn share one ReadIndex round.
struct PendingRead {
    waiters: Vec<Waiter<u64>>,
    /// The commit index the leader confirmed; the read completes once applied reaches it.
    index: Option<u64>,
    /// When the ReadIndex request was last sent (in ticks), for retries.
    sent_at: u64,
}

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
    /// This node's proposals awaiting their entry, by sequence number.
    proposals: HashMap<u64, Proposal>,
    /// Writes waiting for a leader to be known (never proposed yet).
    parked: Vec<Parked>,
    /// The bytes of the entries in `parked`.
    parked_bytes: usize,
    /// A write was refused for overload since the queues last had room (one warning each
    /// time they fill).
    overloaded: bool,
    /// This node's membership changes awaiting their entry, by sequence number.
    conf_changes: HashMap<u64, PendingConf>,
    unsent_reads: Vec<Waiter<u64>>,
    reads: BTreeMap<u64, PendingRead>,
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
    /// Member URLs known here (configuration, snapshots, membership changes).
    urls: HashMap<u64, String>,
    /// URLs learnt since the transport last took them.
    peer_updates: Vec<(String, String)>,
    /// Membership changes applied in this Ready, delivered after its applied entries.
    membership_events: Vec<Event>,
    /// Take a snapshot at the next opportunity, whatever `snapshot_every` says.
    force_snapshot: bool,
    /// Membership changes applied but not complete until the joint configuration is left.
    joint_waiters: Vec<(u64, u64, Waiter<WriteOutcome>)>,
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

/// Most writes a node holds at once, waiting for a leader or for their entry to apply:
/// past it a write fails at once with `ERR_OVERLOADED` (docs/API.md).
pub const MAX_PENDING_WRITES: usize = 65_536;
/// Most bytes of entries a node holds for writes that wait for a leader; past it a write
/// fails at once with `ERR_OVERLOADED`.
pub const MAX_PARKED_BYTES: usize = 256 << 20;

/// A write proposed by this node.
struct Proposal {
    /// The term in which it was proposed.
    term: u64,
    waiter: Waiter<WriteOutcome>,
}

/// A write that waits for a leader before it can be proposed.
struct Parked {
    /// The encoded command.
    data: Vec<u8>,
    forward: bool,
    waiter: Waiter<WriteOutcome>,
}

/// A membership change proposed by this node, resent until its entry is applied: a leader
/// drops conf changes while it has one pending (and right after its election).
struct PendingConf {
    change: ConfChangeV2,
    /// When it was last proposed, in ticks.
    sent_at: u64,
    waiter: Waiter<WriteOutcome>,
}

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
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| Error::Invalid(format!("raft configuration: {e}")))?;
        let logger = crate::log_bridge::raft_logger();
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
            proposals: HashMap::new(),
            parked: Vec::new(),
            parked_bytes: 0,
            overloaded: false,
            conf_changes: HashMap::new(),
            unsent_reads: Vec::new(),
            reads: BTreeMap::new(),
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
            urls,
            peer_updates: Vec::new(),
            membership_events: Vec::new(),
            force_snapshot: false,
            joint_waiters: Vec::new(),
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
        self.expire(Instant::now());
    }

    /// Answers every caller whose deadline passed: `NoLeader` for what never reached a
    /// leader, a timeout (outcome unknown) for what was proposed.
    fn expire(&mut self, now: Instant) {
        for parked in self.parked.extract_if(.., |p| p.waiter.is_over(now)) {
            self.parked_bytes -= parked.data.len();
            let error = parked.waiter.deadline.expired(false);
            parked.waiter.send(Err(error));
        }
        let proposals = self.proposals.extract_if(|_, p| p.waiter.is_over(now));
        let changes = self.conf_changes.extract_if(|_, c| c.waiter.is_over(now));
        for waiter in proposals
            .map(|(_, p)| p.waiter)
            .chain(changes.map(|(_, c)| c.waiter))
        {
            let error = waiter.deadline.expired(true);
            waiter.send(Err(error));
        }
        // A read changes nothing: past its deadline it failed, for want of a leader or not.
        let leaderless = self.raw.raft.leader_id == INVALID_ID;
        let mut expired: Vec<Waiter<u64>> = self
            .unsent_reads
            .extract_if(.., |w| w.is_over(now))
            .collect();
        for read in self.reads.values_mut() {
            expired.extend(read.waiters.extract_if(.., |w| w.is_over(now)));
        }
        self.reads.retain(|_, r| !r.waiters.is_empty());
        for waiter in expired {
            let error = if leaderless {
                Error::NoLeader
            } else {
                Error::Timeout {
                    ms: waiter.deadline.timeout.as_millis() as u64,
                    unknown_outcome: false,
                }
            };
            waiter.send(Err(error));
        }
    }

    /// Starts an election now (tests and single-node bootstrap use it).
    pub fn campaign(&mut self) -> Result<()> {
        self.raw
            .campaign()
            .map_err(|e| Error::Invalid(format!("cannot campaign: {e}")))
    }

    /// Steps a message received from the wire, once screened (see [`crate::screen`]): a
    /// refused message is not stepped, and the caller closes the connection that carried
    /// it with the reason.
    pub fn step(&mut self, mut msg: Message) -> std::result::Result<(), String> {
        let now = Instant::now();
        let sender = Sender {
            silent: self.health.silent_for(msg.from, self.election, now),
            authenticated: self.peers_authenticated,
        };
        match screen(&self.raw.raft, &mut msg, sender) {
            Verdict::Step => {}
            Verdict::Ignore(doubt) => {
                tracing::debug!("message ignored: {doubt}");
                return Ok(());
            }
            Verdict::Refuse(reason) => return Err(reason),
        }
        if let Some(snapshot) = msg.snapshot.as_ref() {
            // Its bytes are this engine's, not the raft crate's: a snapshot that would not
            // restore must not get as far as replacing the log. (Snapshots are rare: the
            // second decoding, on restore, costs little.)
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                SnapshotData::decode(&snapshot.data)?;
            }
        }
        if self.raw.raft.state == StateRole::Leader && self.raw.raft.prs().get(msg.from).is_none() {
            // A removed member that missed its removal: closing with this reason tells it.
            return Err(crate::transport::NOT_A_MEMBER.to_string());
        }
        // Only what a peer says in this term shows that it follows this leader: a member
        // stranded in a newer term must stay silent here (see `screen`'s stranded members).
        if msg.term == 0 || msg.term == self.raw.raft.term {
            self.health.heard(msg.from, now);
        }
        if msg.get_msg_type() == MessageType::MsgPropose && self.raw.raft.state == StateRole::Leader
        {
            self.screen_forwarded_proposals(&mut msg);
            if msg.entries.is_empty() {
                return Ok(()); // every change in it waits (the raft crate panics on none)
            }
        }
        match self.raw.step(msg) {
            Ok(()) => Ok(()),
            // Stale responses from removed peers and the like: harmless, not hostile.
            Err(e) => {
                tracing::trace!("message ignored: {e}");
                Ok(())
            }
        }
    }

    /// Tells the raft crate what became of messages sent to a peer: a leader probes a peer
    /// it could not reach, and sends a snapshot again once one was lost.
    pub fn report_delivery(&mut self, delivery: crate::transport::Delivery) {
        use crate::transport::Delivery;
        use raft::SnapshotStatus;
        match delivery {
            Delivery::Unreachable(peer) => self.raw.report_unreachable(peer),
            Delivery::NotAMember(peer) => {
                if self.was_member && peer == self.raw.raft.leader_id {
                    self.mark_removed();
                }
            }
            Delivery::Snapshot { to, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
        }
    }

    /// Proposes a command; the waiter gets the outcome once this node applies it. With no
    /// leader known, the write waits for one until its deadline.
    pub fn propose(&mut self, command: Command, forward: bool, waiter: Waiter<WriteOutcome>) {
        match self
            .encode_proposal(&command, forward)
            .and_then(|data| self.admit(data))
        {
            Ok(data) => {
                self.parked_bytes += data.len();
                self.parked.push(Parked {
                    data,
                    forward,
                    waiter,
                });
                self.propose_parked();
            }
            Err(e) => waiter.send(Err(e)),
        }
    }

    /// The entry data of a write, or why it fails at once whatever the leader.
    fn encode_proposal(&self, command: &Command, forward: bool) -> Result<Vec<u8>> {
        if self.removed {
            return Err(Error::Removed);
        }
        command.validate().map_err(Error::Invalid)?;
        let data = command.encode();
        if data.len() > self.max_proposal_bytes {
            return Err(Error::TooLarge {
                size: data.len(),
                max: self.max_proposal_bytes,
            });
        }
        let leader = self.raw.raft.leader_id;
        if !forward && leader != INVALID_ID && leader != self.id {
            return Err(self.not_leader());
        }
        Ok(data)
    }

    /// Refuses a write past the bounds of what this node holds for writes in flight (it
    /// would otherwise queue without limit while no leader is known or the log is slow).
    fn admit(&mut self, data: Vec<u8>) -> Result<Vec<u8>> {
        let pending = self.parked.len() + self.proposals.len();
        let over = if pending >= MAX_PENDING_WRITES {
            Some(format!(
                "{pending} writes are in flight on this node (the limit is {MAX_PENDING_WRITES})"
            ))
        } else if self.parked_bytes + data.len() > MAX_PARKED_BYTES {
            Some(format!(
                "{} writes of {} bytes wait for a leader on this node (the limit is {MAX_PARKED_BYTES} bytes)",
                self.parked.len(),
                self.parked_bytes
            ))
        } else {
            None
        };
        match over {
            None => {
                self.overloaded = false;
                Ok(data)
            }
            Some(why) => {
                if !std::mem::replace(&mut self.overloaded, true) {
                    tracing::warn!(
                        pending,
                        parked = self.parked.len(),
                        parked_bytes = self.parked_bytes,
                        "refusing writes: {why}"
                    );
                }
                Err(Error::Overloaded(why))
            }
        }
    }

    /// Proposes the parked writes once the raft crate would take them: a leader is known
    /// and no leadership transfer is pending (it drops proposals meanwhile).
    fn propose_parked(&mut self) {
        let raft = &self.raw.raft;
        let leader = raft.leader_id;
        let transferring = raft.state == StateRole::Leader && raft.lead_transferee.is_some();
        if self.parked.is_empty() || leader == INVALID_ID || transferring {
            return;
        }
        self.parked_bytes = 0;
        for parked in std::mem::take(&mut self.parked) {
            if !parked.forward && leader != self.id {
                let error = self.not_leader();
                parked.waiter.send(Err(error));
                continue;
            }
            let (seq, context) = self.ids.next();
            match self.raw.propose(context, parked.data) {
                Ok(()) => {
                    let term = self.raw.raft.term;
                    let waiter = parked.waiter;
                    self.proposals.insert(seq, Proposal { term, waiter });
                }
                Err(raft::Error::ProposalDropped) => parked.waiter.send(Err(Error::NoLeader)),
                Err(e) => parked
                    .waiter
                    .send(Err(Error::Invalid(format!("proposal refused: {e}")))),
            }
        }
    }

    /// Asks for a linearizable read point: the waiter gets an index such that the local
    /// state, once applied up to it, reflects every write acknowledged before the request.
    /// With no leader known, it waits for one until its deadline. With `lease`, a leader
    /// holding its lease answers without a round trip: at its commit index, once applied
    /// (followers may have acknowledged writes up to that index before this leader applied
    /// them); elsewhere it is an ordinary ReadIndex round.
    pub fn read_index(&mut self, waiter: Waiter<u64>, lease: bool) {
        if self.removed {
            waiter.send(Err(Error::Removed));
            return;
        }
        if lease && self.holds_lease() {
            let index = self.raw.raft.raft_log.committed;
            let (seq, _) = self.ids.next();
            let read = PendingRead {
                waiters: vec![waiter],
                index: Some(index),
                sent_at: self.ticks,
            };
            self.reads.insert(seq, read);
            self.complete_reads();
            return;
        }
        self.unsent_reads.push(waiter);
    }

    /// Hands leadership to `to`, or to the most up-to-date other voter.
    pub fn transfer_leader(&mut self, to: Option<String>, reply: Reply<String>) {
        match self.pick_transferee(to) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(target) if target == self.id => {
                let _ = reply.send(Ok(self.name.clone()));
            }
            Ok(target) => {
                self.raw.transfer_leader(target);
                self.lease.set_transferring(true, Instant::now());
                if let Some(previous) = self.transfer.replace(reply) {
                    let _ = previous.send(Err(Error::Invalid(
                        "superseded by a newer leadership transfer".into(),
                    )));
                }
            }
        }
    }

    fn pick_transferee(&self, to: Option<String>) -> Result<u64> {
        if self.removed {
            return Err(Error::Removed);
        }
        if self.raw.raft.state != StateRole::Leader {
            return Err(self.not_leader());
        }
        let conf = self.raw.raft.prs().conf();
        let voters: Vec<u64> = conf.voters().ids().iter().collect();
        if let Some(name) = to {
            let id = raft_id(&name);
            return if voters.contains(&id) {
                Ok(id)
            } else {
                Err(Error::UnknownMember(name))
            };
        }
        let prs = self.raw.raft.prs();
        voters
            .into_iter()
            .filter(|&v| v != self.id)
            .max_by_key(|&v| prs.get(v).map_or(0, |p| p.matched))
            .ok_or_else(|| Error::Invalid("no other voter to hand leadership to".into()))
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.name_of(self.raw.raft.leader_id),
        }
    }

    /// Fails every pending request with `err` (on stop).
    pub fn fail_all(&mut self, err: Error) {
        let proposals = self.proposals.drain().map(|(_, p)| p.waiter);
        self.parked_bytes = 0;
        let parked = self.parked.drain(..).map(|p| p.waiter);
        let conf_changes = self.conf_changes.drain().map(|(_, c)| c.waiter);
        let joint = self.joint_waiters.drain(..).map(|(_, _, w)| w);
        for waiter in proposals.chain(parked).chain(conf_changes).chain(joint) {
            waiter.send(Err(err.clone()));
        }
        for waiter in self.take_reads() {
            waiter.send(Err(err.clone()));
        }
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
            role: self.role,
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

    /// Records members' names and URLs (from a snapshot or a membership change); new URLs
    /// are passed on to the transport. A URL this node was configured with wins.
    fn learn_members(&mut self, members: Vec<(String, String)>) {
        for (name, url) in members {
            let id = raft_id(&name);
            if id == self.id {
                continue;
            }
            self.names.insert(id, name.clone());
            if !url.is_empty() && !self.urls.contains_key(&id) {
                self.urls.insert(id, url.clone());
                self.peer_updates.push((name, url));
            }
        }
    }

    /// The URL at which this node listens (known once it is bound), for the members table
    /// and snapshots.
    pub fn set_own_url(&mut self, url: &str) {
        self.urls.insert(self.id, url.to_string());
        self.evaluate_health();
    }

    /// Peer URLs learnt since the last call, for the transport.
    pub fn take_peer_updates(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.peer_updates)
    }

    /// Members' names and URLs, for a snapshot.
    fn member_urls(&self) -> Vec<(String, String)> {
        let (voters, learners) = &self.members;
        voters
            .iter()
            .chain(learners.iter())
            .map(|name| {
                let url = self.urls.get(&raft_id(name)).cloned().unwrap_or_default();
                (name.clone(), url)
            })
            .collect()
    }

    /// Voters and learners by name, sorted, from the current configuration.
    fn member_names(&self) -> (Arc<[String]>, Arc<[String]>) {
        let conf = self.raw.raft.prs().conf();
        let names = |ids: &mut dyn Iterator<Item = u64>| -> Arc<[String]> {
            let mut names: Vec<String> = ids.filter_map(|id| self.name_of(id)).collect();
            names.sort();
            names.into()
        };
        let voters = names(&mut conf.voters().ids().iter());
        let learners = names(&mut conf.learners().iter().copied());
        (voters, learners)
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
                if m.from != id && is_forwarded_request(m) {
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

    /// Restores the state machine from a leader's snapshot and persists it.
    fn install_snapshot(
        &mut self,
        snapshot: &raft::eraftpb::Snapshot,
        applied: &mut Vec<AppliedEntry>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let SnapshotData {
            kv: restored,
            app,
            members,
            conf_epoch,
        } = SnapshotData::decode(&snapshot.data).map_err(Error::Storage)?;
        self.raw.mut_store().persist(Some(snapshot), &[], None)?;
        self.learn_members(members);
        self.conf_epoch = conf_epoch;
        *self.kv.write().recover() = restored;
        let meta = snapshot.get_metadata();
        self.last_snapshot = meta.index;
        self.snapshot_index = meta.index;
        // The writes in flight from here may be in the snapshot: none of their entries will
        // be applied here to answer them. Say so now rather than at their deadlines.
        for (_, Proposal { waiter, .. }) in std::mem::take(&mut self.proposals) {
            waiter.send(Err(Error::CaughtUpBySnapshot { index: meta.index }));
        }
        // A snapshot point captured before the install is obsolete.
        self.pending_snapshot = None;
        self.members = self.member_names();
        self.evaluate_health();
        self.track_membership();
        flush_applied(applied, events);
        events.push(Event::Snapshot {
            index: meta.index,
            term: meta.term,
            bytes: snapshot.data.len() as u64,
            restore: self.app_snapshots.then(|| app.unwrap_or_default()),
        });
        Ok(())
    }

    /// Every `snapshot_every` applied entries, captures the state machine for a snapshot:
    /// a [`SnapshotJob`] that the driver runs off its thread (then [`Core::finish_snapshot`]),
    /// or, with app snapshots, a request for the application's bytes first. A forced
    /// snapshot (a member was added behind the compacted log) is taken at once.
    fn maybe_snapshot(
        &mut self,
        applied: &mut Vec<AppliedEntry>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let index = self.raw.raft.raft_log.applied;
        let due = index >= self.last_snapshot + self.snapshot_every;
        let busy = self.snapshot_running || self.snapshot_job.is_some();
        if !self.force_snapshot && (!due || busy) {
            return Ok(());
        }
        let forced = std::mem::take(&mut self.force_snapshot);
        let point = SnapshotPoint {
            index,
            term: self.raw.raft.raft_log.term(index).unwrap_or(0),
            conf_state: self.raw.raft.prs().conf().to_conf_state(),
            kv: self.kv.read().recover().clone(),
            members: self.member_urls(),
            conf_epoch: self.conf_epoch,
        };
        self.last_snapshot = index;
        flush_applied(applied, events);
        if self.app_snapshots {
            // The application's state machine is at `index` right after this batch's
            // applied entries: ask it for its bytes there. A request still unanswered (its
            // hook threw, or it never answered) gives way to this one: the application is
            // asked again at every snapshot point until it answers (a late answer to the old
            // one is then ignored as stale).
            if let Some(unanswered) = &self.pending_snapshot {
                tracing::warn!(
                    unanswered = unanswered.index,
                    index,
                    "the application gave no snapshot for index {}; asking again at {index}",
                    unanswered.index
                );
            }
            self.pending_snapshot = Some(point);
            events.push(Event::SnapshotRequest { index });
            return Ok(());
        }
        let job = SnapshotJob::new(point, None, self.raw.store().snapshot_sink());
        if forced {
            let snapshot = job.run()?;
            self.adopt_snapshot(snapshot, events)?;
        } else {
            self.snapshot_job = Some(job);
        }
        Ok(())
    }

    /// The application's bytes for the snapshot point `index`.
    pub fn provide_app_snapshot(&mut self, index: u64, app: Vec<u8>) {
        match self.pending_snapshot.take() {
            Some(point) if point.index == index => {
                let sink = self.raw.store().snapshot_sink();
                self.snapshot_job = Some(SnapshotJob::new(point, Some(app), sink));
            }
            other => self.pending_snapshot = other, // stale or unknown: ignore
        }
    }

    /// The snapshot job to run now, if one waits and none is running: the driver runs it
    /// off its thread and hands the result to [`Core::finish_snapshot`].
    pub fn take_snapshot_job(&mut self) -> Option<SnapshotJob> {
        if self.snapshot_running {
            return None;
        }
        let job = self.snapshot_job.take()?;
        self.snapshot_running = true;
        Some(job)
    }

    /// The outcome of the job last taken: the store adopts the snapshot and compacts the
    /// log. A failure to write it is a storage failure: the node must stop.
    pub fn finish_snapshot(&mut self, outcome: Result<Snapshot>) -> Result<Vec<Event>> {
        self.snapshot_running = false;
        let mut events = Vec::new();
        self.adopt_snapshot(outcome?, &mut events)?;
        Ok(events)
    }

    fn adopt_snapshot(&mut self, snapshot: Snapshot, events: &mut Vec<Event>) -> Result<()> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let keep = self.entries_to_keep(index);
        let bytes = snapshot.data.len() as u64;
        if self.raw.mut_store().adopt_snapshot(snapshot, keep)? {
            self.snapshot_index = index;
            events.push(Event::Snapshot {
                index,
                term,
                bytes,
                restore: None,
            });
        }
        Ok(())
    }

    /// How many entries before a snapshot at `index` the log keeps. A leader keeps what its
    /// slowest active follower (heard within [`ACTIVE_ELECTIONS`] election timeouts) still
    /// needs, up to twice `snapshot_every` entries: a follower that is replicating, only
    /// behind, catches up from the log. Compacting past it sent such a follower the whole
    /// state instead, and the writes it had forwarded were answered by no entry it applied
    /// (they reached it inside the snapshot).
    fn entries_to_keep(&self, index: u64) -> u64 {
        let keep = crate::config::SNAPSHOT_KEEP_ENTRIES.min(self.snapshot_every);
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return keep;
        }
        let now = Instant::now();
        let window = self.election * ACTIVE_ELECTIONS;
        let slowest = raft
            .prs()
            .iter()
            .filter(|&(&id, _)| id != self.id && !self.health.silent_for(id, window, now))
            .map(|(_, progress)| progress.matched)
            .min();
        match slowest {
            // The follower's next append needs the term of its last entry: keep that too.
            Some(matched) if matched < index => {
                (index - matched).clamp(keep, keep.max(2 * self.snapshot_every))
            }
            _ => keep,
        }
    }

    /// Events to deliver before any other (taken once).
    pub fn take_initial_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.initial_events)
    }

    /// Applies committed entries to the state machine (under one write lock for the batch)
    /// and answers this node's proposals among them.
    fn apply(&mut self, entries: Vec<Entry>, applied: &mut Vec<AppliedEntry>) {
        let Some(last_term) = entries.last().map(|e| e.term) else {
            return;
        };
        self.apply_entries(entries, applied);
        self.fail_superseded_proposals(last_term);
    }

    /// Entries are applied in log order and terms never decrease along the log: once an
    /// entry of term `t` is applied, every entry of an earlier term that will ever commit has
    /// been applied. A proposal made in an earlier term and still unanswered was most likely
    /// dropped with its leader; answer now rather than at its deadline. (It may, rarely,
    /// still commit after a re-forward, so the outcome is reported as unknown.)
    fn fail_superseded_proposals(&mut self, applied_term: u64) {
        let superseded: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.term < applied_term)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in superseded {
            if let Some(Proposal { term, waiter }) = self.proposals.remove(&seq) {
                waiter.send(Err(Error::LeaderChanged { term }));
            }
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, applied: &mut Vec<AppliedEntry>) {
        let kv = Arc::clone(&self.kv);
        let mut kv = kv.write().recover();
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's no-op
                EntryType::EntryNormal => {
                    let Entry {
                        index,
                        term,
                        data,
                        context,
                        ..
                    } = entry;
                    let command = match Command::decode(&data) {
                        Ok(command) => command,
                        Err(e) => {
                            // Same bytes on every member: skipping is deterministic.
                            tracing::warn!(index, "skipping undecodable entry: {e}");
                            continue;
                        }
                    };
                    if let Command::Refused { code, reason } = command {
                        // A write or membership change the leader refused in place of its
                        // entry.
                        if let Some(seq) = self.ids.ours(&context) {
                            let error = Error::from_code(&code, reason);
                            if let Some(change) = self.conf_changes.remove(&seq) {
                                change.waiter.send(Err(error));
                            } else if let Some(proposal) = self.proposals.remove(&seq) {
                                proposal.waiter.send(Err(error));
                            }
                        }
                        continue;
                    }
                    let record = self.applied_events.load(Ordering::Relaxed);
                    let ApplyResult {
                        op,
                        changes,
                        ok,
                        value,
                        data,
                    } = kv.apply(command, record);
                    if record {
                        applied.push(AppliedEntry {
                            index,
                            term,
                            op,
                            changes,
                            ok,
                            data,
                        });
                    }
                    let outcome = WriteOutcome {
                        index,
                        term,
                        ok,
                        value,
                    };
                    self.answer_proposal(&context, outcome);
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry);
                }
            }
        }
    }

    fn answer_proposal(&mut self, context: &[u8], outcome: WriteOutcome) {
        if let Some(proposal) = self
            .ids
            .ours(context)
            .and_then(|seq| self.proposals.remove(&seq))
        {
            proposal.waiter.send(Ok(outcome));
        }
    }

    /// The switch for `Event::Applied`: when off, applied entries are not reported (and
    /// their changes are not copied), which saves work when nobody listens.
    pub fn applied_events(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.applied_events)
    }

    fn apply_conf_change(&mut self, entry: &Entry) {
        let change = match decode_conf_change(entry) {
            Ok(cc) => cc,
            Err(e) => {
                tracing::warn!("undecodable conf change: {e}");
                return;
            }
        };
        let info = MemberInfo::decode(&change.context);
        let ours = self
            .ids
            .ours(&entry.context)
            .and_then(|seq| self.conf_changes.remove(&seq));
        // A change proposed in an older epoch lost the race to another change, or is a resent
        // copy of one that took effect already: every member skips it alike.
        if info
            .as_ref()
            .and_then(|i| i.epoch)
            .is_some_and(|epoch| epoch != self.conf_epoch)
        {
            if let Some(change) = ours {
                change.waiter.send(Err(Error::ConfChangeInProgress));
            }
            return;
        }
        if let Some(info) = info {
            self.learn_members(vec![(info.name, info.url)]);
        }
        match self.raw.apply_conf_change(&change) {
            Ok(_) => {
                self.conf_epoch = entry.index;
                // A member added after the log was compacted catches up by snapshot, and it
                // can only install one that lists it: take one now.
                let adds = change
                    .changes
                    .iter()
                    .any(|c| c.change_type != raft::eraftpb::ConfChangeType::RemoveNode as i32);
                if adds && self.raw.raft.raft_log.first_index() > 1 {
                    self.force_snapshot = true;
                }
                self.members = self.member_names();
                let (voters, learners) = self.members.clone();
                self.health.retain(|id| {
                    voters
                        .iter()
                        .chain(learners.iter())
                        .any(|n| raft_id(n) == id)
                });
                self.evaluate_health();
                self.track_membership();
                self.membership_events
                    .push(Event::MembershipChanged { index: entry.index });
                if let Some(change) = ours {
                    self.joint_waiters
                        .push((entry.index, entry.term, change.waiter));
                }
            }
            Err(e) => {
                tracing::warn!("conf change refused: {e}");
                if let Some(change) = ours {
                    let error = Error::Invalid(format!("membership change refused: {e}"));
                    change.waiter.send(Err(error));
                }
            }
        }
        // A change is complete once the joint configuration it entered has been left: only
        // then is the next change possible, so only then does its proposer hear back. A
        // removed node may never see the leave: its removal is certain once entered.
        let joint = !self.conf_state().voters_outgoing.is_empty();
        if !joint || self.removed {
            for (index, term, waiter) in self.joint_waiters.drain(..) {
                let outcome = WriteOutcome {
                    index,
                    term,
                    ok: true,
                    value: None,
                };
                waiter.send(Ok(outcome));
            }
        }
        // A leader removed at another member's request leads a configuration without it
        // (the raft crate keeps it leading): step down, and the remaining voters elect one
        // of them. (When the leader itself asks, it hands leadership over first.)
        if !joint && self.removed && self.raw.raft.state == StateRole::Leader {
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, INVALID_ID);
        }
    }

    /// Raft ids of every member, and a counter that changes whenever they may have.
    pub fn member_ids(&self) -> (u64, &[u64]) {
        (self.members_version, &self.member_ids)
    }

    /// The current leader's raft id (0 for none).
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    fn conf_state(&self) -> raft::eraftpb::ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    /// Notices this node's removal from the configuration (and its return, were its name
    /// added again). A removed node answers every request with `Removed`, but goes on
    /// taking part in raft: while the joint configuration lasts, its vote may be needed.
    fn track_membership(&mut self) {
        let cs = self.conf_state();
        let mut ids: Vec<u64> = [
            &cs.voters,
            &cs.voters_outgoing,
            &cs.learners,
            &cs.learners_next,
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect();
        ids.sort_unstable();
        ids.dedup();
        self.member_ids = ids;
        self.members_version += 1;
        let member = [&cs.voters, &cs.learners, &cs.learners_next]
            .iter()
            .any(|ids| ids.contains(&self.id));
        if member {
            self.was_member = true;
            self.removed = false;
            return;
        }
        if self.was_member {
            self.mark_removed();
        }
    }

    /// This node is no longer a member: it answers what waits and refuses what comes.
    fn mark_removed(&mut self) {
        if self.removed {
            return;
        }
        tracing::info!("removed from the cluster");
        self.removed = true;
        for parked in self.parked.drain(..) {
            parked.waiter.send(Err(Error::Removed));
        }
        for waiter in self.take_reads() {
            waiter.send(Err(Error::Removed));
        }
        for (_, change) in self.conf_changes.drain() {
            change.waiter.send(Err(Error::Removed));
        }
        // Writes already forwarded may have reached the leader before the removal.
        for (_, Proposal { term, waiter }) in self.proposals.drain() {
            waiter.send(Err(Error::LeaderChanged { term }));
        }
    }

    /// Proposes a membership change; the waiter gets its log position once it is complete
    /// here. It is resent until its entry is applied (leaders drop conf changes while one
    /// is pending), and waits for a leader until its deadline.
    pub fn change_membership(&mut self, change: MembershipChange, waiter: Waiter<WriteOutcome>) {
        match self.prepare_conf_change(change) {
            Ok(change) => {
                let (seq, _) = self.ids.next();
                let pending = PendingConf {
                    change,
                    sent_at: self.ticks,
                    waiter,
                };
                self.conf_changes.insert(seq, pending);
                self.send_conf_change(seq);
            }
            Err(e) => waiter.send(Err(e)),
        }
    }

    /// The conf change for `change`, checked against this node's view of the members.
    fn prepare_conf_change(&self, change: MembershipChange) -> Result<ConfChangeV2> {
        use raft::eraftpb::{ConfChangeSingle, ConfChangeType};
        if self.removed {
            return Err(Error::Removed);
        }
        let conf = self.raw.raft.prs().conf();
        let role_of = |name: &str| {
            let id = raft_id(name);
            (conf.voters().contains(id), conf.learners().contains(&id))
        };
        let (kind, name, url) = match change {
            MembershipChange::Add { name, url, learner } => {
                validate_name(&name)
                    .map_err(|e| Error::Invalid(format!("invalid member id: {e}")))?;
                crate::config::parse_ws_url(&url).map_err(Error::Invalid)?;
                if role_of(&name) != (false, false) {
                    return Err(Error::Invalid(format!("{name} is a member already")));
                }
                let kind = if learner {
                    ConfChangeType::AddLearnerNode
                } else {
                    ConfChangeType::AddNode
                };
                (kind, name, url)
            }
            MembershipChange::Promote { name } => match role_of(&name) {
                (_, true) => {
                    let url = self.urls.get(&raft_id(&name)).cloned().unwrap_or_default();
                    (ConfChangeType::AddNode, name, url)
                }
                (true, false) => return Err(Error::Invalid(format!("{name} is a voter already"))),
                (false, false) => return Err(Error::UnknownMember(name)),
            },
            MembershipChange::Remove { name } => {
                if role_of(&name) == (false, false) {
                    return Err(Error::UnknownMember(name));
                }
                (ConfChangeType::RemoveNode, name, String::new())
            }
        };
        Ok(ConfChangeV2 {
            changes: vec![ConfChangeSingle {
                change_type: kind as i32,
                node_id: raft_id(&name),
            }],
            context: MemberInfo {
                name,
                url,
                epoch: Some(self.conf_epoch),
            }
            .encode(),
            // Joint consensus: enter the joint configuration, and leave it automatically as
            // soon as that is applied (the leader proposes the leave itself).
            transition: raft::eraftpb::ConfChangeTransition::Implicit as i32,
        })
    }

    /// Proposes (again) the pending change `seq`. A leader screens it first; elsewhere the
    /// leader screens it when it arrives.
    fn send_conf_change(&mut self, seq: u64) {
        let Some(pending) = self.conf_changes.get_mut(&seq) else {
            return;
        };
        pending.sent_at = self.ticks;
        let change = pending.change.clone();
        let leader = self.raw.raft.state == StateRole::Leader;
        if leader && removes(&change, self.id) {
            // A leader removing itself hands leadership over first; the change is resent
            // to the new leader as soon as it is known.
            if self.raw.raft.lead_transferee.is_none() {
                if let Ok(target) = self.pick_transferee(None) {
                    self.raw.transfer_leader(target);
                    self.lease.set_transferring(true, Instant::now());
                }
            }
            return;
        }
        let verdict = if leader {
            self.screen_conf_change(&change)
        } else {
            Ok(true)
        };
        if matches!(verdict, Ok(false)) {
            return; // sent again after an election timeout
        }
        let verdict = verdict.and_then(|_| {
            match self.raw.propose_conf_change(self.ids.context(seq), change) {
                // No leader right now, or a leader that drops it: resent on a later tick.
                Ok(()) | Err(raft::Error::ProposalDropped) => Ok(()),
                Err(e) => Err(Error::Invalid(format!("membership change refused: {e}"))),
            }
        });
        if let Err(e) = verdict {
            if let Some(pending) = self.conf_changes.remove(&seq) {
                pending.waiter.send(Err(e));
            }
        }
    }

    /// Resends the membership changes whose entry has not been applied after an election
    /// timeout (dropped by a leader that had one pending, or lost with a leader).
    fn retry_conf_changes(&mut self) {
        let due = self.ticks.saturating_sub(self.election_ticks);
        let seqs: Vec<u64> = self
            .conf_changes
            .iter()
            .filter(|(_, c)| c.sent_at <= due)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in seqs {
            self.send_conf_change(seq);
        }
    }

    /// On the leader: turns the writes over this leader's size limit and the conf changes of
    /// a follower's proposal that must be refused into refusals, which reach the proposer
    /// through the log (the raft crate would drop them silently, and the proposer would wait
    /// until its deadline).
    fn screen_forwarded_proposals(&mut self, msg: &mut Message) {
        let mut later = Vec::new();
        let max = self.max_proposal_bytes;
        for (i, entry) in msg.entries.iter_mut().enumerate() {
            if entry.get_entry_type() == EntryType::EntryNormal {
                // The leader's own limit holds for every write: a forwarded one bypassed it
                // (32 MiB entries were replicated to every member).
                if entry.data.len() > max {
                    let size = entry.data.len();
                    entry.data = refusal(&Error::TooLarge { size, max }).encode();
                }
                continue;
            }
            let verdict = decode_conf_change(entry)
                .map_err(Error::Invalid)
                .and_then(|cc| self.screen_conf_change(&cc));
            match verdict {
                Ok(true) => {}
                // Dropped: the follower sends it again.
                Ok(false) => later.push(i),
                Err(e) => {
                    entry.set_entry_type(EntryType::EntryNormal);
                    entry.data = refusal(&e).encode();
                }
            }
        }
        for i in later.into_iter().rev() {
            msg.entries.remove(i);
        }
    }

    /// On the leader: whether a membership change made by raftline may go ahead now
    /// (`Ok(false)`: not yet, send it again later). One change at a time, in the epoch it was
    /// made for, consistent with the members, and leaving a quorum of voters reachable and
    /// caught up (etcd's strict reconfiguration).
    fn screen_conf_change(&self, cc: &ConfChangeV2) -> Result<bool> {
        use raft::eraftpb::ConfChangeType;
        let Some(info) = MemberInfo::decode(&cc.context).filter(|i| i.epoch.is_some()) else {
            if cc.changes.is_empty() {
                return Ok(true); // leaving a joint configuration: the raft crate judges it
            }
            // raftline makes every change with its epoch: one without it would skip the
            // checks below.
            return Err(Error::Invalid(
                "a membership change without its epoch".into(),
            ));
        };
        if !self.conf_state().voters_outgoing.is_empty() || self.conf_entry_pending() {
            return Err(Error::ConfChangeInProgress);
        }
        if info.epoch != Some(self.conf_epoch) {
            return Err(Error::ConfChangeInProgress);
        }
        let conf = self.raw.raft.prs().conf();
        let mut voters: std::collections::BTreeSet<u64> = conf.voters().ids().iter().collect();
        let existing = voters.clone();
        for single in &cc.changes {
            let id = single.node_id;
            let (voter, learner) = (voters.contains(&id), conf.learners().contains(&id));
            match ConfChangeType::from_i32(single.change_type) {
                Some(ConfChangeType::AddNode) if voter => {
                    return Err(Error::Invalid(format!("{} is a voter already", info.name)))
                }
                Some(ConfChangeType::AddLearnerNode) if voter || learner => {
                    return Err(Error::Invalid(format!("{} is a member already", info.name)))
                }
                Some(ConfChangeType::RemoveNode) if !voter && !learner => {
                    return Err(Error::UnknownMember(info.name.clone()))
                }
                Some(ConfChangeType::AddNode) => {
                    voters.insert(id);
                }
                Some(_) => {
                    voters.remove(&id);
                }
                None => return Err(Error::Invalid("unknown conf change type".into())),
            }
        }
        // Existing voters count when heard from within an election timeout (the leader's
        // health judgement); a new or promoted one must also have caught up with the log.
        let now = Instant::now();
        let last_index = self.raw.raft.raft_log.last_index();
        let recent = self.election;
        let live = voters
            .iter()
            .filter(|&&v| {
                if v == self.id {
                    return true;
                }
                let heard = self
                    .health
                    .last_contact(v, now)
                    .is_some_and(|ago| ago <= recent);
                let caught_up = existing.contains(&v)
                    || self.raw.raft.prs().get(v).is_some_and(|pr| {
                        last_index.saturating_sub(pr.matched)
                            <= crate::config::SNAPSHOT_KEEP_ENTRIES
                    });
                heard && caught_up
            })
            .count();
        let quorum = voters.len() / 2 + 1;
        if live < quorum {
            // A leader elected moments ago has not heard from every follower yet: that is
            // not knowledge that they are gone. The change waits to be sent again.
            if self
                .health
                .leading_for(now)
                .is_some_and(|leading| leading <= recent * 2)
            {
                return Ok(false);
            }
            return Err(Error::Invalid(format!(
                "changing {} now would leave {live} of {} voters reachable and caught up, short of \
                 a quorum of {quorum}: bring members back first, or add a new member as a learner \
                 and promote it once it has caught up",
                info.name,
                voters.len()
            )));
        }
        Ok(true)
    }

    /// True when the leader's log holds a conf change not applied yet.
    fn conf_entry_pending(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        if log.applied >= log.last_index() {
            return false;
        }
        match log.entries(log.applied + 1, None, raft::GetEntriesContext::empty(false)) {
            Ok(entries) => entries
                .iter()
                .any(|e| e.get_entry_type() != EntryType::EntryNormal),
            Err(_) => true,
        }
    }

    /// On the leader, judges every member's health (events for changes); everywhere,
    /// refreshes the members table that handles read.
    fn evaluate_health(&mut self) {
        let now = Instant::now();
        let leader = self.raw.raft.state == StateRole::Leader;
        let last_index = self.raw.raft.raft_log.last_index();
        let mut view = Vec::new();
        let (voters, learners) = self.members.clone();
        for (name, voter) in voters
            .iter()
            .map(|n| (n, true))
            .chain(learners.iter().map(|n| (n, false)))
        {
            let id = raft_id(name);
            let progress = self.raw.raft.prs().get(id).filter(|_| leader);
            let (health, match_index, last_contact) = match progress {
                _ if id == self.id && leader => {
                    (Health::Healthy, Some(last_index), Some(Duration::ZERO))
                }
                Some(pr) => {
                    let health = self.health.judge(
                        id,
                        pr.state,
                        last_index.saturating_sub(pr.matched),
                        now,
                        self.heartbeat,
                        self.election,
                    );
                    if let Some(previous) = self.health.update(id, health) {
                        self.deferred.push(Event::PeerHealth {
                            peer: name.clone(),
                            health,
                            previous,
                        });
                    }
                    (health, Some(pr.matched), self.health.last_contact(id, now))
                }
                None => (Health::Unknown, None, None),
            };
            view.push(MemberView {
                url: self.urls.get(&id).cloned(),
                name: name.clone(),
                voter,
                health,
                match_index,
                last_contact,
            });
        }
        *self.members_view.write().recover() = view;
    }

    /// The members table handles read (refreshed every heartbeat).
    pub fn members_view(&self) -> Arc<RwLock<Vec<MemberView>>> {
        Arc::clone(&self.members_view)
    }

    /// Events raised between Readys, plus a lease change: for a turn without a Ready.
    pub fn quiet_events(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.deferred);
        events.extend(self.lease_change());
        events
    }

    /// Sends one ReadIndex request for all reads that arrived since the last turn.
    fn send_reads(&mut self) {
        if self.unsent_reads.is_empty() || self.raw.raft.leader_id == INVALID_ID {
            return; // with no leader known, they wait for one (or their deadline)
        }
        let (seq, context) = self.ids.next();
        self.reads.insert(
            seq,
            PendingRead {
                waiters: std::mem::take(&mut self.unsent_reads),
                index: None,
                sent_at: self.ticks,
            },
        );
        self.raw.read_index(context);
    }

    /// A leader drops ReadIndex requests until it has committed an entry of its term, and
    /// the network may drop them too: ask again for those still unanswered, once a leader
    /// is known.
    fn retry_reads(&mut self) {
        if self.raw.raft.leader_id == INVALID_ID {
            return;
        }
        let due = self.ticks.saturating_sub(2 * self.heartbeat_ticks);
        for (&seq, read) in self.reads.iter_mut() {
            if read.index.is_none() && read.sent_at <= due {
                read.sent_at = self.ticks;
                self.raw.read_index(self.ids.context(seq));
            }
        }
    }

    fn record_read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            let Some(seq) = self.ids.ours(&state.request_ctx) else {
                continue;
            };
            if self.lease.is_probe(seq) {
                self.lease.confirm(seq);
            } else if let Some(read) = self.reads.get_mut(&seq) {
                read.index.get_or_insert(state.index);
            }
        }
    }

    /// Sends a lease probe (a ReadIndex round), unless no lease can result.
    fn probe_lease(&mut self) {
        let (seq, context) = self.ids.next();
        if self.lease.probe(seq, Instant::now()) {
            self.raw.read_index(context);
        }
    }

    /// When the lease held now ends (the driver wakes then).
    pub fn lease_until(&self) -> Option<Instant> {
        let leader = self.raw.raft.state == StateRole::Leader;
        self.lease.until(leader, Instant::now())
    }

    /// True while this node leads under a confirmed, unexpired lease.
    pub fn holds_lease(&self) -> bool {
        self.lease_until().is_some()
    }

    /// Reports a lease gained or lost since the last call (the driver calls it every turn,
    /// so an expiry is seen within a tick even when nothing else happens).
    pub fn lease_change(&mut self) -> Option<Event> {
        let held = self.holds_lease();
        if held == self.lease.reported {
            return None;
        }
        self.lease.reported = held;
        Some(Event::LeaseChanged {
            held,
            term: self.raw.raft.term,
        })
    }

    /// Every read still waiting, sent or not, taken out (to be answered now).
    fn take_reads(&mut self) -> Vec<Waiter<u64>> {
        let reads = std::mem::take(&mut self.reads);
        let mut waiters = std::mem::take(&mut self.unsent_reads);
        waiters.extend(reads.into_values().flat_map(|r| r.waiters));
        waiters
    }

    fn complete_reads(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        let done: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in done {
            if let Some(read) = self.reads.remove(&seq) {
                let index = read.index.unwrap_or(applied);
                for waiter in read.waiters {
                    waiter.send(Ok(index));
                }
            }
        }
    }

    fn current_role(&self) -> Role {
        let raft = &self.raw.raft;
        if raft.prs().conf().learners().contains(&self.id) {
            return Role::Learner;
        }
        match raft.state {
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Leader => Role::Leader,
        }
    }

    /// Compares leader and role with the last turn (as etcd's `lead != r.lead`), emitting the
    /// change events and finishing a leadership transfer.
    fn diff_leadership(&mut self, events: &mut Vec<Event>) {
        let term = self.raw.raft.term;
        let role = self.current_role();
        let raft = &self.raw.raft;
        let transferring = raft.state == StateRole::Leader && raft.lead_transferee.is_some();
        self.lease.set_transferring(transferring, Instant::now());
        if role != self.role {
            self.health.set_leader(role == Role::Leader, Instant::now());
            if role != Role::Leader {
                self.lease.revoke();
            }
            events.push(Event::RoleChanged {
                role,
                previous: self.role,
                term,
            });
            self.role = role;
        }
        let leader = self.raw.raft.leader_id;
        if leader != self.leader {
            events.push(Event::LeaderChanged {
                leader: self.name_of(leader),
                previous: self.name_of(self.leader),
                term,
            });
            self.leader = leader;
            if leader != INVALID_ID && leader != self.id {
                if let Some(reply) = self.transfer.take() {
                    let _ = reply.send(Ok(self.name_of(leader).unwrap_or_default()));
                }
            }
            if leader != INVALID_ID {
                // Changes waiting for a leader (or for this one to hand over) go now.
                let pending: Vec<u64> = self.conf_changes.keys().copied().collect();
                for seq in pending {
                    self.send_conf_change(seq);
                }
            }
        }
    }

    /// True when a Ready is waiting (or reads wait to be sent).
    pub fn has_ready(&self) -> bool {
        !self.unsent_reads.is_empty() || self.raw.has_ready()
    }
}

/// A write or a read index request on its way to the leader.
fn is_forwarded_request(m: &Message) -> bool {
    m.msg_type == MessageType::MsgPropose as i32 || m.msg_type == MessageType::MsgReadIndex as i32
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
