//! Peer health as the leader sees it, from when it last heard from each peer and how far
//! each one's log is behind.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raft::{ProgressState, StateRole};

use crate::core::events::Event;
use crate::ids::raft_id;
use crate::sync::Recover;

/// How a member looks from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Answers within a couple of heartbeats and replicates normally.
    Healthy,
    /// Answers late, or is being caught up (probing, receiving a snapshot, far behind).
    Degraded,
    /// Silent for longer than an election timeout.
    Unhealthy,
    /// Not known here (this node is not the leader).
    Unknown,
}

impl Health {
    /// The name docs/API.md uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        }
    }
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    /// Where it listens, as far as this node knows (its configuration, the log, snapshots).
    pub url: Option<String>,
    pub voter: bool,
    pub health: Health,
    /// Highest log index known to be replicated on it (leader only).
    pub match_index: Option<u64>,
    /// Time since the leader last heard from it (leader only).
    pub last_contact: Option<Duration>,
}

/// Entries behind the leader past which a member counts as degraded.
const LAG_DEGRADED: u64 = 10_000;

/// A peer being sent a snapshot, or probed while behind, or far behind, lags. (A peer that
/// was unreachable stays in the probe state while the log is idle: caught up, it is fine.)
fn lagging(state: ProgressState, lag: u64) -> bool {
    match state {
        ProgressState::Snapshot => true,
        ProgressState::Probe => lag > 0,
        ProgressState::Replicate => lag > LAG_DEGRADED,
    }
}

/// The leader's record of its peers.
#[derive(Default)]
pub struct HealthTracker {
    last_heard: HashMap<u64, Instant>,
    health: HashMap<u64, Health>,
    /// When this node last became leader (peers never heard from are judged from then).
    since: Option<Instant>,
    /// Members as this node sees them, refreshed every heartbeat; read by handles.
    pub(crate) view: Arc<RwLock<Vec<MemberView>>>,
}

impl HealthTracker {
    /// A message from `peer` arrived.
    pub fn heard(&mut self, peer: u64, now: Instant) {
        self.last_heard.insert(peer, now);
    }

    /// Leadership was won (`true`) or lost: health is only known on a leader.
    pub fn set_leader(&mut self, leader: bool, now: Instant) {
        self.since = leader.then_some(now);
        self.health.clear();
    }

    /// The health of `peer` now, given its replication state.
    pub fn judge(
        &self,
        peer: u64,
        state: ProgressState,
        lag: u64,
        now: Instant,
        heartbeat: Duration,
        election: Duration,
    ) -> Health {
        let Some(since) = self.since else {
            return Health::Unknown;
        };
        let reference = match self.last_heard.get(&peer) {
            Some(&heard) => heard.max(since),
            None => since,
        };
        let silent = now.saturating_duration_since(reference);
        if silent > election {
            Health::Unhealthy
        } else if silent > heartbeat * 3 || lagging(state, lag) {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    /// Records `health` for `peer`; returns the previous one when it changed.
    pub fn update(&mut self, peer: u64, health: Health) -> Option<Health> {
        let previous = self.health.insert(peer, health).unwrap_or(Health::Unknown);
        (previous != health).then_some(previous)
    }

    /// How long this node has been leading (None when it is not).
    pub fn leading_for(&self, now: Instant) -> Option<Duration> {
        self.since.map(|since| now.saturating_duration_since(since))
    }

    /// On a leader: true when `peer` has not been heard from within `window` (counted from
    /// when this node became leader, at the earliest).
    pub fn silent_for(&self, peer: u64, window: Duration, now: Instant) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        let reference = self.last_heard.get(&peer).map_or(since, |&t| t.max(since));
        now.saturating_duration_since(reference) > window
    }

    /// Time since `peer` was last heard from.
    pub fn last_contact(&self, peer: u64, now: Instant) -> Option<Duration> {
        self.last_heard
            .get(&peer)
            .map(|&t| now.saturating_duration_since(t))
    }

    /// Forgets peers no longer in the configuration.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.last_heard.retain(|id, _| keep(*id));
        self.health.retain(|id, _| keep(*id));
    }
}

impl<S: crate::storage::LogStore> super::Core<S> {
    /// On the leader, judges every member's health (events for changes); everywhere,
    /// refreshes the members table that handles read.
    pub(super) fn evaluate_health(&mut self) {
        let now = self.time.clock.now();
        let leader = self.raw.raft.state == StateRole::Leader;
        let last_index = self.raw.raft.raft_log.last_index();
        let mut view = Vec::new();
        let (voters, learners) = self.directory.named();
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
                        self.time.heartbeat,
                        self.time.election,
                    );
                    if let Some(previous) = self.health.update(id, health) {
                        self.outbox.deferred.push(Event::PeerHealth {
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
                url: self.directory.url(id).cloned(),
                name: name.clone(),
                voter,
                health,
                match_index,
                last_contact,
            });
        }
        *self.health.view.write().recover() = view;
    }

    /// The members table handles read (refreshed every heartbeat).
    pub fn members_view(&self) -> Arc<RwLock<Vec<MemberView>>> {
        Arc::clone(&self.health.view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judgement_table() {
        let hb = Duration::from_millis(10);
        let el = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut tracker = HealthTracker::default();
        assert_eq!(
            tracker.judge(2, ProgressState::Replicate, 0, t0, hb, el),
            Health::Unknown,
            "not leader"
        );
        tracker.set_leader(true, t0);
        tracker.heard(2, t0);
        // (case, since last heard, state, lag, expected)
        let cases = [
            (
                "fresh and replicating",
                5,
                ProgressState::Replicate,
                0,
                Health::Healthy,
            ),
            (
                "late answers",
                40,
                ProgressState::Replicate,
                0,
                Health::Degraded,
            ),
            (
                "probing while behind",
                5,
                ProgressState::Probe,
                3,
                Health::Degraded,
            ),
            (
                "probe state but caught up (idle log)",
                5,
                ProgressState::Probe,
                0,
                Health::Healthy,
            ),
            (
                "receiving a snapshot",
                5,
                ProgressState::Snapshot,
                0,
                Health::Degraded,
            ),
            (
                "far behind",
                5,
                ProgressState::Replicate,
                20_000,
                Health::Degraded,
            ),
            (
                "silent past the election timeout",
                60,
                ProgressState::Replicate,
                0,
                Health::Unhealthy,
            ),
        ];
        for (case, ms, state, lag, expected) in cases {
            let now = t0 + Duration::from_millis(ms);
            assert_eq!(
                tracker.judge(2, state, lag, now, hb, el),
                expected,
                "{case}"
            );
        }
        assert_eq!(tracker.update(2, Health::Healthy), Some(Health::Unknown));
        assert_eq!(tracker.update(2, Health::Healthy), None);
        assert_eq!(tracker.update(2, Health::Unhealthy), Some(Health::Healthy));
    }
}
