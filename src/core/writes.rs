//! Writes: admission within the bounds, parking while no leader is known, proposing, and
//! answering each write from the entry that applies it (or as of unknown outcome).

use super::*;

impl<S: LogStore> Core<S> {
    /// Proposes a command; the waiter gets the outcome once this node applies it. With no
    /// leader known, the write waits for one until its deadline. The write is proposed with
    /// the others of its turn, by the next Ready ([`Core::has_ready`] says so) or as soon as
    /// they fill an append.
    pub fn propose(&mut self, command: Command, forward: bool, waiter: Waiter<WriteOutcome>) {
        match self.encode_proposal(&command, forward) {
            Ok(data) => {
                if let Command::SessionClose { id } = command {
                    // Its holder is done with it: no more renewals, whether or not the close
                    // commits (if it is lost, the session expires after its TTL).
                    self.sessions.stop_keeping(id);
                }
                self.writes.park(data, forward, waiter);
                if self.writes.parked_bytes >= MAX_APPEND_BYTES as usize {
                    self.propose_parked();
                }
            }
            Err(e) => waiter.send(Err(e)),
        }
    }

    /// The entry data of a write, or why it fails at once whatever the leader.
    pub(super) fn encode_proposal(&self, command: &Command, forward: bool) -> Result<Vec<u8>> {
        if self.directory.removed() {
            return Err(Error::Removed);
        }
        command.validate().map_err(Error::Invalid)?;
        self.check_session_command(command)?;
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

    /// Parked writes wait, and the raft crate would take them now: a leader is known and no
    /// leadership transfer is pending (it drops proposals meanwhile).
    pub(super) fn can_propose_parked(&self) -> bool {
        let raft = &self.raw.raft;
        let transferring = raft.state == StateRole::Leader && raft.lead_transferee.is_some();
        !self.writes.parked.is_empty() && raft.leader_id != INVALID_ID && !transferring
    }

    /// Proposes the parked writes if the raft crate would take them, in as few proposals as
    /// [`MAX_APPEND_BYTES`] allows: the raft crate sends each proposal to every follower in
    /// an append of its own, so writes proposed one by one cost a message, a response and a
    /// step on every member each.
    pub(super) fn propose_parked(&mut self) {
        if !self.can_propose_parked() {
            return;
        }
        let leader = self.raw.raft.leader_id;
        let mut group = ProposalGroup::default();
        for parked in self.writes.take_parked() {
            if !parked.forward && leader != self.id {
                let error = self.not_leader();
                parked.waiter.send(Err(error));
                continue;
            }
            if group.is_full_before(parked.data.len()) {
                self.propose_group(std::mem::take(&mut group));
            }
            let (seq, mut context) = self.ids.next();
            if leader != self.id {
                // Forwarded: the transport may hold it while the leader cannot be reached,
                // and must not send it after its caller's deadline.
                context = crate::peer_messages::with_deadline(context, parked.waiter.deadline.at);
            }
            group.push(seq, context, parked);
        }
        self.propose_group(group);
    }

    /// Steps one proposal of `group`'s entries: the raft crate takes or drops them together.
    fn propose_group(&mut self, group: ProposalGroup) {
        if group.entries.is_empty() {
            return;
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.id;
        m.entries = group.entries;
        let term = self.raw.raft.term;
        match self.raw.raft.step(m) {
            Ok(()) => {
                for (seq, waiter) in group.waiters {
                    self.writes.proposed(seq, term, waiter);
                }
            }
            Err(e) => {
                let error = match e {
                    raft::Error::ProposalDropped => Error::NoLeader,
                    e => Error::Invalid(format!("proposal refused: {e}")),
                };
                for (_, waiter) in group.waiters {
                    waiter.send(Err(error.clone()));
                }
            }
        }
    }

    pub(super) fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.name_of(self.raw.raft.leader_id),
        }
    }

    pub(super) fn answer_proposal(&mut self, context: &[u8], outcome: WriteOutcome) {
        if let Some(seq) = self.ids.ours(context) {
            self.writes.applied(seq, outcome);
        }
    }
}

/// Most bytes of entries a node holds for writes that wait for a leader; past it a write
/// fails at once with `ERR_OVERLOADED`.
pub const MAX_PARKED_BYTES: usize = 256 << 20;

/// Writes proposed together, in one message to the raft crate.
#[derive(Default)]
struct ProposalGroup {
    entries: Vec<Entry>,
    waiters: Vec<(u64, Waiter<WriteOutcome>)>,
    bytes: usize,
}

impl ProposalGroup {
    /// Whether an entry of `bytes` would take the group past one append's worth (a group
    /// of one entry may be larger).
    fn is_full_before(&self, bytes: usize) -> bool {
        !self.entries.is_empty() && self.bytes + bytes > MAX_APPEND_BYTES as usize
    }

    fn push(&mut self, seq: u64, context: Vec<u8>, parked: Parked) {
        self.bytes += parked.data.len();
        self.entries.push(Entry {
            data: parked.data,
            context,
            ..Default::default()
        });
        self.waiters.push((seq, parked.waiter));
    }
}

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

/// This node's writes, parked or proposed. Every way a write ends but by its own entry is a
/// method here: a deadline, a stop, a removal, a snapshot install, a newer term.
#[derive(Default)]
pub(super) struct Writes {
    /// Most writes held at once (`Config::max_pending_writes`).
    max_pending: usize,
    /// Proposed and awaiting their entry, by sequence number.
    proposals: HashMap<u64, Proposal>,
    /// Waiting for a leader to be known (never proposed yet).
    parked: Vec<Parked>,
    /// The bytes of the entries in `parked`.
    parked_bytes: usize,
    /// A write was refused for overload since the queues last had room (one warning each
    /// time they fill).
    overloaded: bool,
}

impl Writes {
    /// No writes yet; at most `max_pending` held at once.
    pub(super) fn new(max_pending: usize) -> Self {
        Writes {
            max_pending,
            ..Writes::default()
        }
    }

    /// Refuses a write past the bounds of what this node holds for writes in flight (it
    /// would otherwise queue without limit while no leader is known or the log is slow);
    /// else parks it until a leader is known.
    fn park(&mut self, data: Vec<u8>, forward: bool, waiter: Waiter<WriteOutcome>) {
        let pending = self.parked.len() + self.proposals.len();
        let over = if pending >= self.max_pending {
            Some(format!(
                "{pending} writes are in flight on this node (the limit is {}: option maxPendingWrites)",
                self.max_pending
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
        let Some(why) = over else {
            self.overloaded = false;
            self.parked_bytes += data.len();
            self.parked.push(Parked {
                data,
                forward,
                waiter,
            });
            return;
        };
        if !std::mem::replace(&mut self.overloaded, true) {
            tracing::warn!(
                pending,
                parked = self.parked.len(),
                parked_bytes = self.parked_bytes,
                "refusing writes: {why}"
            );
        }
        waiter.send(Err(Error::Overloaded(why)));
    }

    /// The parked writes, taken to be proposed.
    fn take_parked(&mut self) -> Vec<Parked> {
        self.parked_bytes = 0;
        std::mem::take(&mut self.parked)
    }

    /// No write parked or proposed.
    pub(super) fn is_empty(&self) -> bool {
        self.parked.is_empty() && self.proposals.is_empty()
    }

    /// When the caller of write `seq` asked for it (its deadline less its timeout).
    pub(super) fn started_at(&self, seq: u64) -> Option<Instant> {
        let deadline = &self.proposals.get(&seq)?.waiter.deadline;
        Some(
            deadline
                .at
                .checked_sub(deadline.timeout)
                .unwrap_or(deadline.at),
        )
    }

    fn proposed(&mut self, seq: u64, term: u64, waiter: Waiter<WriteOutcome>) {
        self.proposals.insert(seq, Proposal { term, waiter });
    }

    /// Write `seq`'s entry applied with `outcome`.
    pub(super) fn applied(&mut self, seq: u64, outcome: WriteOutcome) {
        if let Some(proposal) = self.proposals.remove(&seq) {
            proposal.waiter.send(Ok(outcome));
        }
    }

    /// The leader refused write `seq` in place of its entry.
    pub(super) fn refused(&mut self, seq: u64, error: Error) {
        if let Some(proposal) = self.proposals.remove(&seq) {
            proposal.waiter.send(Err(error));
        }
    }

    /// Entries are applied in log order and terms never decrease along the log: once an
    /// entry of term `t` is applied, every entry of an earlier term that will ever commit has
    /// been applied. A proposal made in an earlier term and still unanswered was most likely
    /// dropped with its leader; answer now rather than at its deadline. (It may, rarely,
    /// still commit after a re-forward, so the outcome is reported as unknown.)
    pub(super) fn superseded(&mut self, applied_term: u64) {
        for (_, Proposal { term, waiter }) in
            self.proposals.extract_if(|_, p| p.term < applied_term)
        {
            waiter.send(Err(Error::LeaderChanged { term }));
        }
    }

    /// The writes whose deadline passed: parked ones were never proposed, proposed ones
    /// may still commit.
    pub(super) fn expire(&mut self, now: Instant) {
        for parked in self.parked.extract_if(.., |p| p.waiter.is_over(now)) {
            self.parked_bytes -= parked.data.len();
            let error = parked.waiter.deadline.expired(false);
            parked.waiter.send(Err(error));
        }
        for (_, proposal) in self.proposals.extract_if(|_, p| p.waiter.is_over(now)) {
            let error = proposal.waiter.deadline.expired(true);
            proposal.waiter.send(Err(error));
        }
    }

    /// The writes in flight may be inside the snapshot this node installed at `index`: none
    /// of their entries will be applied here to answer them. Say so now rather than at their
    /// deadlines.
    pub(super) fn caught_up_by_snapshot(&mut self, index: u64) {
        for (_, proposal) in self.proposals.drain() {
            proposal
                .waiter
                .send(Err(Error::CaughtUpBySnapshot { index }));
        }
    }

    /// This node was removed: parked writes never will be proposed; forwarded ones may have
    /// reached the leader before the removal.
    pub(super) fn removed(&mut self) {
        self.parked_bytes = 0;
        for parked in self.parked.drain(..) {
            parked.waiter.send(Err(Error::Removed));
        }
        for (_, Proposal { term, waiter }) in self.proposals.drain() {
            waiter.send(Err(Error::LeaderChanged { term }));
        }
    }

    /// Every write fails with `err` (the node stops).
    pub(super) fn fail_all(&mut self, err: &Error) {
        self.parked_bytes = 0;
        let parked = self.parked.drain(..).map(|p| p.waiter);
        let proposals = self.proposals.drain().map(|(_, p)| p.waiter);
        for waiter in parked.chain(proposals) {
            waiter.send(Err(err.clone()));
        }
    }
}
