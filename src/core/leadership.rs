//! Leadership: campaigns, transfers, the leader lease and the role changes reported as events.

use super::*;

/// What this node last reported of leadership, its lease, and a transfer it started.
pub(super) struct Leadership {
    /// The leader last reported (0 for none).
    pub(super) leader: u64,
    /// The role last reported.
    pub(super) role: Role,
    pub(super) lease: Lease,
    /// A leadership transfer this node started, answered when a leader is known.
    pub(super) transfer: Option<Reply<String>>,
    /// The leader's node is gone: this follower campaigns without waiting for its timer.
    pub(super) failover: Option<Failover>,
}

/// A failover in progress (see [`Core::leader_gone`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Failover {
    /// From this tick on, campaign (pre-vote first) while no leader is known.
    from: u64,
    /// After this tick, leave it to the election timer.
    until: u64,
}

/// Ticks between the failover campaigns of two survivors of adjacent rank: the first
/// campaigns at once, the next only if no leader emerged meanwhile (two at once would
/// split the vote, and the election timer would decide after all).
const FAILOVER_STAGGER_TICKS: u64 = 2;

impl Leadership {
    pub(super) fn new(lease: Lease) -> Self {
        Leadership {
            leader: INVALID_ID,
            role: Role::Follower,
            lease,
            transfer: None,
            failover: None,
        }
    }
}

impl<S: LogStore> Core<S> {
    /// Starts an election now (tests and single-node bootstrap use it). Only a voter may:
    /// the raft crate would make a node outside the configuration (a joiner not yet added)
    /// leader of nobody, and panic.
    pub fn campaign(&mut self) -> Result<()> {
        if !self.raw.raft.promotable() {
            return Err(Error::Invalid("cannot campaign: not a voter".into()));
        }
        self.raw
            .campaign()
            .map_err(|e| Error::Invalid(format!("cannot campaign: {e}")))
    }

    /// The node of `peer` is gone: its host refused a connection, so nothing listens at its
    /// address (its process was killed or crashed, or it stopped). If it was this
    /// follower's leader, the follower forgets it and campaigns now instead of after an
    /// election timeout: ranked by raft id among the other voters, the first at once and
    /// each next one [`FAILOVER_STAGGER_TICKS`] later, for as long as no leader is known
    /// (at most one election timeout; then the timer takes over). Pre-vote keeps this from
    /// disturbing a live leader: a voter that still hears from one refuses the pre-vote.
    ///
    /// The lease stays safe: a voter forgets its leader early only when the leader's own
    /// host refused a connection to its listener, and a node whose listener is gone serves
    /// no lease (it stopped, or its process died). A leader cut off by the network is never
    /// refused, only unreachable: its followers wait for their timers as before.
    pub(super) fn leader_gone(&mut self, peer: u64) {
        let raft = &self.raw.raft;
        if peer == INVALID_ID
            || peer != raft.leader_id
            || raft.state != StateRole::Follower
            || !raft.promotable()
        {
            return;
        }
        let mut others: Vec<u64> = raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .filter(|&v| v != peer)
            .collect();
        others.sort_unstable();
        let rank = others.iter().position(|&v| v == self.id).unwrap_or(0) as u64;
        tracing::info!(
            leader = ?self.name_of(peer),
            "the leader's node is gone (its address refuses connections): failing over"
        );
        let term = raft.term;
        self.raw.raft.become_follower(term, INVALID_ID);
        let from = self.time.ticks + rank * FAILOVER_STAGGER_TICKS;
        self.leadership.failover = Some(Failover {
            from,
            until: from + self.time.election_ticks,
        });
        self.continue_failover();
    }

    /// Campaigns for a failover that is due, while no leader is known. A voter that has not
    /// yet seen the leader go ignores the pre-vote (it still hears the leader, as far as it
    /// knows): the pre-vote is sent again on the next tick, not after an election timeout.
    pub(super) fn continue_failover(&mut self) {
        let Some(failover) = self.leadership.failover else {
            return;
        };
        let raft = &self.raw.raft;
        let ticks = self.time.ticks;
        if raft.leader_id != INVALID_ID || ticks > failover.until {
            self.leadership.failover = None;
            return;
        }
        let waiting = matches!(raft.state, StateRole::Follower | StateRole::PreCandidate);
        if ticks >= failover.from && waiting {
            let _ = self.raw.campaign();
        }
    }

    /// Hands leadership to `to`, or to the most up-to-date other voter.
    pub fn transfer_leader(&mut self, to: Option<String>, reply: Reply<String>) {
        match self.pick_transferee(to) {
            Err(e) => {
                reply.send(Err(e));
            }
            Ok(target) if target == self.id => {
                reply.send(Ok(self.name.clone()));
            }
            Ok(target) => {
                self.raw.transfer_leader(target);
                self.leadership
                    .lease
                    .set_transferring(true, self.time.clock.now());
                if let Some(previous) = self.leadership.transfer.replace(reply) {
                    previous.send(Err(Error::Invalid(
                        "superseded by a newer leadership transfer".into(),
                    )));
                }
            }
        }
    }

    /// Answers a transfer the raft crate gave up (its transferee did not take over within an
    /// election timeout, or its TimeoutNow was lost, and this node still leads, or leads
    /// again) at once, rather than at the caller's deadline: the caller may try again.
    pub(super) fn settle_transfer(&mut self) {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
            return;
        }
        if let Some(reply) = self.leadership.transfer.take() {
            reply.send(Err(Error::Timeout {
                ms: self.time.election.as_millis() as u64,
                unknown_outcome: false,
            }));
        }
    }

    pub(super) fn pick_transferee(&self, to: Option<String>) -> Result<u64> {
        if self.directory.removed() {
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

    /// The current leader's raft id (0 for none).
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// Role, term and leader id now: what a published status must not lag behind when
    /// peers can hear from this node (cheaper to compare than a whole [`Status`]).
    pub fn leadership(&self) -> (Role, u64, u64) {
        (
            self.current_role(),
            self.raw.raft.term,
            self.raw.raft.leader_id,
        )
    }

    /// Sends a lease probe (a ReadIndex round), unless no lease can result.
    pub(super) fn probe_lease(&mut self) {
        let (seq, context) = self.ids.next();
        if self.leadership.lease.probe(seq, self.time.clock.now()) {
            self.raw.read_index(context);
        }
    }

    /// When the lease held now ends (the driver wakes then).
    pub fn lease_until(&self) -> Option<Instant> {
        let leader = self.raw.raft.state == StateRole::Leader;
        self.leadership.lease.until(leader, self.time.clock.now())
    }

    /// True while this node leads under a confirmed, unexpired lease.
    pub fn holds_lease(&self) -> bool {
        self.lease_until().is_some()
    }

    /// Reports a lease gained or lost since the last call (the driver calls it every turn,
    /// so an expiry is seen within a tick even when nothing else happens).
    pub fn lease_change(&mut self) -> Option<Event> {
        let held = self.holds_lease();
        if held == self.leadership.lease.reported {
            return None;
        }
        self.leadership.lease.reported = held;
        Some(Event::LeaseChanged {
            held,
            term: self.raw.raft.term,
        })
    }

    pub(super) fn current_role(&self) -> Role {
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
    pub(super) fn diff_leadership(&mut self, events: &mut Vec<Event>) {
        let term = self.raw.raft.term;
        let role = self.current_role();
        let raft = &self.raw.raft;
        let transferring = raft.state == StateRole::Leader && raft.lead_transferee.is_some();
        self.leadership
            .lease
            .set_transferring(transferring, self.time.clock.now());
        if role != self.leadership.role {
            self.health
                .set_leader(role == Role::Leader, self.time.clock.now());
            if role != Role::Leader {
                self.leadership.lease.revoke();
            }
            events.push(Event::RoleChanged {
                role,
                previous: self.leadership.role,
                term,
            });
            self.leadership.role = role;
        }
        let leader = self.raw.raft.leader_id;
        if leader != self.leadership.leader {
            events.push(Event::LeaderChanged {
                leader: self.name_of(leader),
                previous: self.name_of(self.leadership.leader),
                term,
            });
            self.leadership.leader = leader;
            if leader != INVALID_ID && leader != self.id {
                if let Some(reply) = self.leadership.transfer.take() {
                    reply.send(Ok(self.name_of(leader).unwrap_or_default()));
                }
            }
            if leader != INVALID_ID {
                // Changes waiting for a leader (or for this one to hand over) go now.
                let pending: Vec<u64> = self.changes.pending.keys().copied().collect();
                for seq in pending {
                    self.send_conf_change(seq);
                }
            }
        }
        self.settle_transfer();
    }
}
