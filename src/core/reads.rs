//! Linearizable reads: ReadIndex rounds shared by the requests of a turn, retried until
//! answered, completed once the applied index reaches the confirmed commit index.

use super::*;

impl<S: LogStore> Core<S> {
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

    /// Sends one ReadIndex request for all reads that arrived since the last turn.
    pub(super) fn send_reads(&mut self) {
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
    pub(super) fn retry_reads(&mut self) {
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

    pub(super) fn record_read_states(&mut self, states: Vec<ReadState>) {
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

    /// Every read still waiting, sent or not, taken out (to be answered now).
    pub(super) fn take_reads(&mut self) -> Vec<Waiter<u64>> {
        let reads = std::mem::take(&mut self.reads);
        let mut waiters = std::mem::take(&mut self.unsent_reads);
        waiters.extend(reads.into_values().flat_map(|r| r.waiters));
        waiters
    }

    pub(super) fn complete_reads(&mut self) {
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
}
