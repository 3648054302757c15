//! Membership changes: proposed, screened (strict reconfiguration: one at a time, through a
//! joint configuration), applied, and answered once the joint configuration is left. The
//! directory they change is in `directory.rs`.

use super::*;

impl<S: LogStore> Core<S> {
    pub(super) fn apply_conf_change(&mut self, entry: &Entry) {
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
            .and_then(|seq| self.changes.pending.remove(&seq));
        // A change proposed in an older epoch lost the race to another change, or is a resent
        // copy of one that took effect already: every member skips it alike.
        if info
            .as_ref()
            .and_then(|i| i.epoch)
            .is_some_and(|epoch| epoch != self.directory.conf_epoch)
        {
            if let Some(change) = ours {
                change.waiter.send(Err(Error::ConfChangeInProgress));
            }
            return;
        }
        if let Some(info) = info {
            self.directory.learn(vec![(info.name, info.url)]);
        }
        match self.raw.apply_conf_change(&change) {
            Ok(_) => {
                self.directory.conf_epoch = entry.index;
                // A member added after the log was compacted catches up by snapshot, and it
                // can only install one that lists it: take one now.
                let adds = change
                    .changes
                    .iter()
                    .any(|c| c.change_type != raft::eraftpb::ConfChangeType::RemoveNode as i32);
                if adds && self.raw.raft.raft_log.first_index() > 1 {
                    self.snapshots.forced = true;
                }
                self.refresh_members();
                self.outbox
                    .membership
                    .push(Event::MembershipChanged { index: entry.index });
                if let Some(change) = ours {
                    self.changes
                        .joint
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
        if !joint || self.directory.removed() {
            for (index, term, waiter) in self.changes.joint.drain(..) {
                let outcome = WriteOutcome {
                    index,
                    term,
                    ok: true,
                    ..WriteOutcome::default()
                };
                waiter.send(Ok(outcome));
            }
        }
        // A leader removed at another member's request leads a configuration without it
        // (the raft crate keeps it leading): step down, and the remaining voters elect one
        // of them. (When the leader itself asks, it hands leadership over first.)
        if !joint && self.directory.removed() && self.raw.raft.state == StateRole::Leader {
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, INVALID_ID);
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
                    sent_at: self.time.ticks,
                    waiter,
                };
                self.changes.pending.insert(seq, pending);
                self.send_conf_change(seq);
            }
            Err(e) => waiter.send(Err(e)),
        }
    }

    /// The conf change for `change`, checked against this node's view of the members.
    pub(super) fn prepare_conf_change(&self, change: MembershipChange) -> Result<ConfChangeV2> {
        use raft::eraftpb::{ConfChangeSingle, ConfChangeType};
        if self.directory.removed() {
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
                    let url = self
                        .directory
                        .url(raft_id(&name))
                        .cloned()
                        .unwrap_or_default();
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
                epoch: Some(self.directory.conf_epoch),
            }
            .encode(),
            // Joint consensus: enter the joint configuration, and leave it automatically as
            // soon as that is applied (the leader proposes the leave itself).
            transition: raft::eraftpb::ConfChangeTransition::Implicit as i32,
        })
    }

    /// Proposes (again) the pending change `seq`. A leader screens it first; elsewhere the
    /// leader screens it when it arrives.
    pub(super) fn send_conf_change(&mut self, seq: u64) {
        let Some(pending) = self.changes.pending.get_mut(&seq) else {
            return;
        };
        pending.sent_at = self.time.ticks;
        let change = pending.change.clone();
        let leader = self.raw.raft.state == StateRole::Leader;
        if leader && removes(&change, self.id) {
            // A leader removing itself hands leadership over first; the change is resent
            // to the new leader as soon as it is known.
            if self.raw.raft.lead_transferee.is_none() {
                if let Ok(target) = self.pick_transferee(None) {
                    self.raw.transfer_leader(target);
                    self.leadership
                        .lease
                        .set_transferring(true, self.time.clock.now());
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
            if let Some(pending) = self.changes.pending.remove(&seq) {
                pending.waiter.send(Err(e));
            }
        }
    }

    /// Resends the membership changes whose entry has not been applied after an election
    /// timeout (dropped by a leader that had one pending, or lost with a leader).
    pub(super) fn retry_conf_changes(&mut self) {
        let due = self.time.ticks.saturating_sub(self.time.election_ticks);
        let seqs: Vec<u64> = self
            .changes
            .pending
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
    pub(super) fn screen_forwarded_proposals(&mut self, msg: &mut Message) {
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
    pub(super) fn screen_conf_change(&self, cc: &ConfChangeV2) -> Result<bool> {
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
        if info.epoch != Some(self.directory.conf_epoch) {
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
        let now = self.time.clock.now();
        let last_index = self.raw.raft.raft_log.last_index();
        let recent = self.time.election;
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
    pub(super) fn conf_entry_pending(&self) -> bool {
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
}

/// A membership change proposed by this node, resent until its entry is applied: a leader
/// drops conf changes while it has one pending (and right after its election).
pub(super) struct PendingConf {
    change: ConfChangeV2,
    /// When it was last proposed, in ticks.
    sent_at: u64,
    pub(super) waiter: Waiter<WriteOutcome>,
}

/// This node's membership changes: proposed and awaiting their entry (resent until then),
/// and applied but not complete until the joint configuration is left.
#[derive(Default)]
pub(super) struct Changes {
    /// Awaiting their entry, by sequence number: ordered, so that they are resent in the
    /// order they were asked for (in a hash map's order, the change a leader takes first
    /// differed from run to run of one seeded simulation).
    pub(super) pending: BTreeMap<u64, PendingConf>,
    /// (index, term, waiter) of changes applied into a joint configuration.
    pub(super) joint: Vec<(u64, u64, Waiter<WriteOutcome>)>,
}

impl Changes {
    /// The changes whose deadline passed (a proposed change may still take effect).
    pub(super) fn expire(&mut self, now: Instant) {
        let over: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, c)| c.waiter.is_over(now))
            .map(|(&seq, _)| seq)
            .collect();
        for change in over.iter().filter_map(|seq| self.pending.remove(seq)) {
            let error = change.waiter.deadline.expired(true);
            change.waiter.send(Err(error));
        }
    }

    /// Every change fails with `err`.
    pub(super) fn fail_all(&mut self, err: &Error) {
        let pending = std::mem::take(&mut self.pending)
            .into_values()
            .map(|c| c.waiter);
        let joint = self.joint.drain(..).map(|(_, _, w)| w);
        for waiter in pending.chain(joint) {
            waiter.send(Err(err.clone()));
        }
    }
}
