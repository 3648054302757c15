//! Telling followers the commit index, a moment late.
//!
//! By default the raft crate's leader broadcasts an append to every follower each time its
//! commit index moves, and every follower answers it: four of the eight messages of a write
//! in a 3-member cluster, and on a durable follower a write of its own. The next write's
//! append carries the new commit index anyway, so the leader skips the broadcast
//! (`skip_bcast_commit`, which the crate still overrides while a membership change is
//! pending) and tells the followers the raft crate left behind only when no append told them
//! within [`NOTICE_DELAY`]. A follower's state so lags the leader's by at most that much more
//! when writes are sparse; under a stream of writes nothing changes but the messages saved.
//!
//! Nothing of safety rests on when a follower learns the commit index: the leader's commit,
//! its lease and its reads do not depend on it, and a follower's linearizable read learns it
//! from the heartbeat round of its ReadIndex.

use super::*;

/// How long a follower may go untold of the leader's commit index.
pub(crate) const NOTICE_DELAY: Duration = Duration::from_millis(1);

/// The commit index each follower was last told, and when the untold ones are due.
#[derive(Default)]
pub(super) struct CommitNotice {
    /// Follower id -> the highest commit index an append or heartbeat carried to it, in
    /// `term`.
    told: HashMap<u64, u64>,
    term: u64,
    /// When the followers behind must be told.
    due: Option<Instant>,
}

impl CommitNotice {
    /// Records what was told in `term`: (follower, commit index) pairs.
    pub(super) fn observe(&mut self, term: u64, told: Vec<(u64, u64, u64)>) {
        if term != self.term {
            self.told.clear();
            self.term = term;
        }
        for (to, in_term, commit) in told {
            if in_term == term {
                let told = self.told.entry(to).or_default();
                *told = (*told).max(commit);
            }
        }
    }
}

/// The follower, term and commit index `m` tells, if it tells one (appends and heartbeats).
pub(super) fn told(m: &Message) -> Option<(u64, u64, u64)> {
    let carries = m.msg_type == MessageType::MsgAppend as i32
        || m.msg_type == MessageType::MsgHeartbeat as i32;
    carries.then_some((m.to, m.term, m.commit))
}

impl<S: LogStore> Core<S> {
    /// When followers must next be told the commit index (`None`: none is behind, or this
    /// node does not lead). Looked at after every turn.
    pub fn commit_notice_due(&mut self) -> Option<Instant> {
        let behind = self.untold_followers().next().is_some();
        let notice = &mut self.commit_notice;
        match (behind, notice.due) {
            (false, _) => notice.due = None,
            (true, None) => notice.due = Some(self.time.clock.now() + NOTICE_DELAY),
            (true, Some(_)) => {}
        }
        notice.due
    }

    /// Tells every follower behind the commit index it may know, if it is due. The appends
    /// leave with the next Ready.
    pub fn tell_commit(&mut self) {
        let due = self.commit_notice.due;
        if due.is_none_or(|due| self.time.clock.now() < due) {
            return;
        }
        self.commit_notice.due = None;
        let untold: Vec<u64> = self.untold_followers().collect();
        for id in untold {
            self.raw.raft.send_append(id);
        }
    }

    /// Followers (voters and learners) told less of the commit index than they could use:
    /// the lower of the leader's commit index and what they hold. A follower the leader may
    /// not send to now (a probe unanswered, its window full, a snapshot under way) hears it
    /// with the appends that follow.
    /// (Looked at after every turn: an iterator, not a collection.)
    fn untold_followers(&self) -> impl Iterator<Item = u64> + '_ {
        let raft = &self.raw.raft;
        let leads = raft.state == StateRole::Leader;
        let committed = raft.raft_log.committed;
        let notice = &self.commit_notice;
        let told = move |id: u64| match notice.term == raft.term {
            true => notice.told.get(&id).copied().unwrap_or(0),
            false => 0,
        };
        raft.prs()
            .iter()
            .filter(move |(id, pr)| {
                leads
                    && **id != self.id
                    && !pr.is_paused()
                    && told(**id) < committed.min(pr.matched)
            })
            .map(|(id, _)| *id)
    }
}
