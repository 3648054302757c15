//! Writes: admission within the bounds, parking while no leader is known, proposing, and
//! answering each write from the entry that applies it (or as of unknown outcome).

use super::*;

impl<S: LogStore> Core<S> {
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
    pub(super) fn encode_proposal(&self, command: &Command, forward: bool) -> Result<Vec<u8>> {
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
    pub(super) fn admit(&mut self, data: Vec<u8>) -> Result<Vec<u8>> {
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
    pub(super) fn propose_parked(&mut self) {
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

    pub(super) fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.name_of(self.raw.raft.leader_id),
        }
    }

    /// Entries are applied in log order and terms never decrease along the log: once an
    /// entry of term `t` is applied, every entry of an earlier term that will ever commit has
    /// been applied. A proposal made in an earlier term and still unanswered was most likely
    /// dropped with its leader; answer now rather than at its deadline. (It may, rarely,
    /// still commit after a re-forward, so the outcome is reported as unknown.)
    pub(super) fn fail_superseded_proposals(&mut self, applied_term: u64) {
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

    pub(super) fn answer_proposal(&mut self, context: &[u8], outcome: WriteOutcome) {
        if let Some(proposal) = self
            .ids
            .ours(context)
            .and_then(|seq| self.proposals.remove(&seq))
        {
            proposal.waiter.send(Ok(outcome));
        }
    }
}
