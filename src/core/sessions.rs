//! Sessions as this node takes part in them (the replicated table is
//! [`crate::state_machine::sessions`]). Three duties, each on the core's clock:
//!
//! 1. **Measure.** Every member notes when it applied the entry that last renewed each
//!    session. Only its own apply times count: a leader elected meanwhile measures from when
//!    it applied the last renewal, never from an older one, so a leader change never
//!    shortens a session and never resets it either (etcd's leases restart their TTL on a
//!    new leader; these do not).
//! 2. **Expire.** The leader proposes the expiry of a session unrenewed for its TTL by its
//!    measure, naming the renewal it measured from; the entry ends the session only if no
//!    later renewal applied first.
//! 3. **Keep.** The node that opened a session renews it every third of its TTL, and gives it
//!    up (an event, before the cluster can expire it) once [`give_up_after`] has passed since
//!    it *sent* the last renewal that applied. The renewal was applied on the leader after it
//!    was sent, and the leader waits a whole TTL from then by its own clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::*;
use crate::state_machine::sessions::SessionOutcome;

/// Most that two members' clocks may differ in rate, in parts per thousand: a holder gives
/// its session up this much earlier than its TTL (docs/API.md states the assumption).
pub const CLOCK_DRIFT_PER_MILLE: u32 = 10;

/// How long after sending the last renewal that applied a holder may still count on its
/// session: the TTL shortened by the clocks' drift and by `margin` (the holder's own tick).
pub fn give_up_after(ttl: Duration, margin: Duration) -> Duration {
    (ttl * 1000 / (1000 + CLOCK_DRIFT_PER_MILLE)).saturating_sub(margin)
}

/// One member's measure of one session.
struct Measure {
    /// The index of the entry that opened or last renewed it.
    renewed_at: u64,
    ttl: Duration,
    /// When this node applied that entry.
    applied: Instant,
}

/// A session this node opened and keeps alive.
struct Kept {
    ttl: Duration,
    /// When the newest renewal was proposed.
    sent: Instant,
    /// When the newest renewal that applied (or the opening) was sent.
    acked: Instant,
}

/// The sessions' clocks and the sessions this node keeps.
#[derive(Default)]
pub(super) struct SessionKeeper {
    measures: HashMap<u64, Measure>,
    /// Expiries this leader proposed, and when: proposed again after an election timeout
    /// if the first was lost.
    expiring: HashMap<u64, Instant>,
    kept: BTreeMap<u64, Kept>,
    /// Renewals this node proposed that have not applied, by request sequence: when each was
    /// sent.
    renewals: HashMap<u64, Instant>,
    /// Until when each kept session may be counted on, shared with the handles: the holder's
    /// JavaScript side times its signal by it, so that a driver that stalls (a disk that
    /// hangs an fsync) cannot hold the signal back past the moment the cluster may expire it.
    deadlines: Arc<Mutex<HashMap<u64, Instant>>>,
    /// Sessions this node applied the expiry of.
    expired: u64,
    /// Sessions opened here whose opener had given up: closed on the next tick.
    orphans: Vec<u64>,
}

/// Until when kept sessions may be counted on (see `SessionKeeper::deadlines`).
pub type SessionDeadlines = Arc<Mutex<HashMap<u64, Instant>>>;

impl SessionKeeper {
    /// Whether this node keeps session `id` (opened it, and has not lost it).
    pub(super) fn keeps(&self, id: u64) -> bool {
        self.kept.contains_key(&id)
    }

    /// Stops renewing session `id`: its holder closes it (and reports no event for it).
    pub(super) fn stop_keeping(&mut self, id: u64) {
        if self.kept.remove(&id).is_some() {
            self.deadlines.lock().recover().remove(&id);
        }
    }

    /// Publishes every kept session's deadline anew (`margin`: the node's tick).
    fn publish_deadlines(&self, margin: Duration) {
        let deadlines = self
            .kept
            .iter()
            .map(|(id, k)| (*id, k.acked + give_up_after(k.ttl, margin)))
            .collect();
        *self.deadlines.lock().recover() = deadlines;
    }
}

impl<S: LogStore> Core<S> {
    /// Until when each session this node keeps may be counted on (shared, kept current).
    pub fn session_deadlines(&self) -> SessionDeadlines {
        Arc::clone(&self.sessions.deadlines)
    }

    /// Sessions whose expiry this node applied since it started.
    pub fn sessions_expired(&self) -> u64 {
        self.sessions.expired
    }

    /// The margin a holder keeps below its TTL besides the clocks' drift: one tick.
    fn session_margin(&self) -> Duration {
        self.time.heartbeat / self.time.heartbeat_ticks.max(1) as u32
    }
}

impl<S: LogStore> Core<S> {
    /// A session command of this node's (open or close) is checked against the node's timing:
    /// a TTL shorter than ten heartbeats would expire between two renewals.
    pub(super) fn check_session_command(&self, command: &Command) -> Result<()> {
        if let Command::SessionOpen { ttl_ms } = command {
            let min = self.time.heartbeat * 10;
            if Duration::from_millis(*ttl_ms) < min {
                return Err(Error::Invalid(format!(
                    "a session's ttl must be at least ten heartbeats ({} ms), got {ttl_ms} ms",
                    min.as_millis()
                )));
            }
        }
        Ok(())
    }

    /// Entry `index` opened, renewed or ended sessions as `outcome` says; the sessions of
    /// this node's that ended are reported after the Ready's applied entries.
    pub(super) fn sessions_applied(
        &mut self,
        index: u64,
        context: &[u8],
        outcome: &SessionOutcome,
    ) {
        let now = self.time.clock.now();
        let ours = self.ids.ours(context);
        let keeper = &mut self.sessions;
        if let Some(ttl_ms) = outcome.opened {
            let ttl = Duration::from_millis(ttl_ms);
            let measure = Measure {
                renewed_at: index,
                ttl,
                applied: now,
            };
            keeper.measures.insert(index, measure);
            match ours.map(|seq| self.writes.started_at(seq)) {
                Some(Some(sent)) => {
                    let kept = Kept {
                        ttl,
                        sent,
                        acked: sent,
                    };
                    keeper.kept.insert(index, kept);
                }
                // Opened here for a caller that gave up waiting (its outcome unknown to it):
                // nobody can use it, so it is closed rather than left to expire.
                Some(None) => keeper.orphans.push(index),
                None => {}
            }
        }
        let sent = ours.and_then(|seq| keeper.renewals.remove(&seq));
        for id in &outcome.renewed {
            if let Some(measure) = keeper.measures.get_mut(id) {
                measure.renewed_at = index;
                measure.applied = now;
            }
            keeper.expiring.remove(id);
            if let (Some(kept), Some(sent)) = (keeper.kept.get_mut(id), sent) {
                kept.acked = kept.acked.max(sent);
            }
        }
        let events = &mut self.outbox.sessions;
        for id in &outcome.unknown {
            if keeper.kept.remove(id).is_some() {
                events.push(Event::SessionEnded {
                    id: *id,
                    lost: true,
                });
            }
        }
        for id in &outcome.ended {
            keeper.measures.remove(id);
            keeper.expiring.remove(id);
            if keeper.kept.remove(id).is_some() {
                // Expired by the leader, or closed elsewhere (a close here stopped the
                // keeping when it was proposed).
                events.push(Event::SessionEnded {
                    id: *id,
                    lost: true,
                });
            }
        }
        self.sessions.expired += u64::from(outcome.expired);
        if outcome != &SessionOutcome::default() {
            let margin = self.session_margin();
            self.sessions.publish_deadlines(margin);
        }
    }

    /// Measures every session anew from now: the table was replaced (a snapshot restored or
    /// installed), and when its renewals applied elsewhere is unknown here.
    pub(super) fn measure_sessions_from_now(&mut self) {
        let now = self.time.clock.now();
        let kv = self.kv.read().recover();
        self.sessions.measures = kv
            .sessions()
            .iter()
            .map(|(id, r)| {
                let measure = Measure {
                    renewed_at: r.renewed_at,
                    ttl: Duration::from_millis(r.ttl_ms),
                    applied: now,
                };
                (id, measure)
            })
            .collect();
        self.sessions.expiring.clear();
    }

    /// The table was replaced by an installed snapshot: every session is measured from now,
    /// and a kept session the snapshot does not hold is lost.
    pub(super) fn sessions_replaced(&mut self, events: &mut Vec<Event>) {
        self.measure_sessions_from_now();
        let measures = &self.sessions.measures;
        let kept = &self.sessions.kept;
        let gone: Vec<u64> = kept
            .keys()
            .copied()
            .filter(|id| !measures.contains_key(id))
            .collect();
        for id in gone {
            self.sessions.kept.remove(&id);
            events.push(Event::SessionEnded { id, lost: true });
        }
        let margin = self.session_margin();
        self.sessions.publish_deadlines(margin);
    }

    /// On each tick: gives up kept sessions it can no longer count on, renews those due,
    /// and, on the leader, proposes the expiry of sessions unrenewed for their TTL.
    pub(super) fn keep_sessions(&mut self) {
        for id in std::mem::take(&mut self.sessions.orphans) {
            let data = Command::SessionClose { id }.encode();
            // A close lost with a leader leaves the session to expire.
            let _ = self.raw.propose(Vec::new(), data);
        }
        if self.sessions.measures.is_empty() && self.sessions.kept.is_empty() {
            return;
        }
        let now = self.time.clock.now();
        let margin = self.session_margin();
        let kept = &self.sessions.kept;
        let lost: Vec<u64> = kept
            .iter()
            .filter(|(_, k)| now >= k.acked + give_up_after(k.ttl, margin))
            .map(|(id, _)| *id)
            .collect();
        if !lost.is_empty() {
            for id in &lost {
                self.sessions.kept.remove(id);
            }
            self.sessions.publish_deadlines(margin);
        }
        for id in lost {
            tracing::warn!(session = id, "session lost: no renewal applied in time");
            self.outbox
                .deferred
                .push(Event::SessionEnded { id, lost: true });
        }
        self.renew_sessions(now);
        if self.raw.raft.state == StateRole::Leader {
            self.propose_expiries(now);
        }
    }

    /// Proposes one renewal of the kept sessions a third of whose TTL passed since their
    /// last renewal was sent.
    fn renew_sessions(&mut self, now: Instant) {
        let longest = self.sessions.kept.values().map(|k| k.ttl).max();
        // A renewal that never applied (dropped with a leader) is forgotten after a TTL.
        if let Some(longest) = longest {
            self.sessions
                .renewals
                .retain(|_, sent| now.duration_since(*sent) < longest);
        } else {
            self.sessions.renewals.clear();
        }
        let due: Vec<u64> = self
            .sessions
            .kept
            .iter()
            .filter(|(_, k)| now.duration_since(k.sent) >= k.ttl / 3)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() || self.raw.raft.leader_id == INVALID_ID {
            return;
        }
        use crate::state_machine::sessions::MAX_RENEWALS_PER_ENTRY;
        for ids in due.chunks(MAX_RENEWALS_PER_ENTRY) {
            let data = Command::SessionRenew { ids: ids.to_vec() }.encode();
            let (seq, context) = self.ids.next();
            if self.raw.propose(context, data).is_ok() {
                self.sessions.renewals.insert(seq, now);
                for id in ids {
                    if let Some(kept) = self.sessions.kept.get_mut(id) {
                        kept.sent = now;
                    }
                }
            }
        }
    }

    /// Proposes the expiry of every session this leader measured out.
    fn propose_expiries(&mut self, now: Instant) {
        let retry = self.time.election;
        let mut expired = Vec::new();
        for (id, measure) in &self.sessions.measures {
            let proposed = self.sessions.expiring.get(id);
            if now.duration_since(measure.applied) >= measure.ttl
                && proposed.is_none_or(|at| now.duration_since(*at) >= retry)
            {
                expired.push((*id, measure.renewed_at));
            }
        }
        for (id, renewed_at) in expired {
            let data = Command::SessionExpire { id, renewed_at }.encode();
            if self.raw.propose(Vec::new(), data).is_ok() {
                self.sessions.expiring.insert(id, now);
            }
        }
    }
}
