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
        if self.directory.removed() {
            waiter.send(Err(Error::Removed));
            return;
        }
        if lease && self.holds_lease() {
            let index = self.raw.raft.raft_log.committed;
            let (seq, _) = self.ids.next();
            self.reads
                .start(seq, vec![waiter], Some(index), self.time.ticks);
            self.complete_reads();
            return;
        }
        self.reads.unsent.push(waiter);
    }

    /// Sends one ReadIndex request for all reads that arrived since the last turn.
    pub(super) fn send_reads(&mut self) {
        if self.reads.unsent.is_empty() || self.raw.raft.leader_id == INVALID_ID {
            return; // with no leader known, they wait for one (or their deadline)
        }
        let (seq, context) = self.ids.next();
        let waiters = std::mem::take(&mut self.reads.unsent);
        self.reads.start(seq, waiters, None, self.time.ticks);
        self.raw.read_index(context);
    }

    /// A leader drops ReadIndex requests until it has committed an entry of its term, and
    /// the network may drop them too: ask again for those still unanswered, once a leader
    /// is known.
    pub(super) fn retry_reads(&mut self) {
        if self.raw.raft.leader_id == INVALID_ID {
            return;
        }
        let due = self
            .time
            .ticks
            .saturating_sub(2 * self.time.heartbeat_ticks);
        for seq in self.reads.due_again(due, self.time.ticks) {
            self.raw.read_index(self.ids.context(seq));
        }
    }

    pub(super) fn record_read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            let Some(seq) = self.ids.ours(&state.request_ctx) else {
                continue;
            };
            if self.leadership.lease.is_probe(seq) {
                self.leadership.lease.confirm(seq);
            } else {
                self.reads.confirmed(seq, state.index);
            }
        }
    }

    pub(super) fn complete_reads(&mut self) {
        self.reads.complete(self.raw.raft.raft_log.applied);
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

/// This node's linearizable reads. Every way a read ends is one method here: answered at its
/// index, past its deadline, or failed with the node (stopped, removed).
#[derive(Default)]
pub(super) struct Reads {
    /// Arrived since the last turn: they go out together in one ReadIndex round.
    pub(super) unsent: Vec<Waiter<u64>>,
    /// ReadIndex rounds by sequence number.
    rounds: BTreeMap<u64, PendingRead>,
}

impl Reads {
    pub(super) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// No read waits, sent or not.
    pub(super) fn is_empty(&self) -> bool {
        self.unsent.is_empty() && self.rounds.is_empty()
    }

    /// A round `seq` for `waiters`, sent now (`index`: already known, for a lease read).
    fn start(&mut self, seq: u64, waiters: Vec<Waiter<u64>>, index: Option<u64>, ticks: u64) {
        let read = PendingRead {
            waiters,
            index,
            sent_at: ticks,
        };
        self.rounds.insert(seq, read);
    }

    /// The unanswered rounds last sent at or before `due`, marked sent at `ticks`.
    fn due_again(&mut self, due: u64, ticks: u64) -> Vec<u64> {
        let mut again = Vec::new();
        for (&seq, read) in self.rounds.iter_mut() {
            if read.index.is_none() && read.sent_at <= due {
                read.sent_at = ticks;
                again.push(seq);
            }
        }
        again
    }

    /// The leader confirmed round `seq` at commit index `index`.
    fn confirmed(&mut self, seq: u64, index: u64) {
        if let Some(read) = self.rounds.get_mut(&seq) {
            read.index.get_or_insert(index);
        }
    }

    /// Answers the rounds whose index this node has applied.
    fn complete(&mut self, applied: u64) {
        let done: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&seq, _)| seq)
            .collect();
        for read in done.iter().filter_map(|seq| self.rounds.remove(seq)) {
            let index = read.index.unwrap_or(applied);
            for waiter in read.waiters {
                waiter.send(Ok(index));
            }
        }
    }

    /// A read changes nothing: past its deadline it failed, for want of a leader or not.
    pub(super) fn expire(&mut self, now: Instant, leaderless: bool) {
        let mut expired: Vec<Waiter<u64>> =
            self.unsent.extract_if(.., |w| w.is_over(now)).collect();
        for read in self.rounds.values_mut() {
            expired.extend(read.waiters.extract_if(.., |w| w.is_over(now)));
        }
        self.rounds.retain(|_, r| !r.waiters.is_empty());
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

    /// Every read, sent or not, fails with `err`.
    pub(super) fn fail_all(&mut self, err: &Error) {
        let rounds = std::mem::take(&mut self.rounds);
        let unsent = std::mem::take(&mut self.unsent);
        for waiter in unsent
            .into_iter()
            .chain(rounds.into_values().flat_map(|r| r.waiters))
        {
            waiter.send(Err(err.clone()));
        }
    }
}
