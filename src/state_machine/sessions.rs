//! Sessions in the replicated state: which exist, their time to live, and the log index of
//! the entry that last kept each alive.
//!
//! Time never enters the state: every member applies the same entries to the same table.
//! When a session has gone unrenewed for its TTL is each member's own measure, from when it
//! applied the last renewal ([`crate::core`]'s session clocks); the leader then proposes an
//! expiry that names the renewal it measured from, and the expiry takes effect only if no
//! later renewal was applied before it. A keepalive in flight therefore wins over an expiry
//! proposed from an older one, and a new leader, which measures from when it applied the
//! last renewal itself, never ends a session earlier than the old leader would have.

use std::collections::BTreeMap;

/// Shortest TTL a session may have (the node's own bound, ten heartbeats, is checked where
/// the heartbeat is known).
pub const MIN_SESSION_TTL_MS: u64 = 100;
/// Longest TTL a session may have: one day.
pub const MAX_SESSION_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Most sessions the cluster holds; opening one more fails with `ERR_OVERLOADED`.
pub const MAX_SESSIONS: usize = 100_000;
/// Most sessions one keepalive entry renews (a node with more sends several).
pub const MAX_RENEWALS_PER_ENTRY: usize = 10_000;

/// One session as every member holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRecord {
    pub ttl_ms: u64,
    /// Index of the entry that opened or last renewed it.
    pub renewed_at: u64,
}

/// What a session command did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionOutcome {
    /// Sessions that ended in this entry (closed or expired), in id order.
    pub ended: Vec<u64>,
    /// For a renewal: the ids it renewed, and those it named that no longer exist (ended
    /// before it applied).
    pub renewed: Vec<u64>,
    pub unknown: Vec<u64>,
    /// For an open that created the session (the table was not full): its TTL in ms.
    pub opened: Option<u64>,
    /// For an expiry: whether it ended the session (no renewal applied since it was measured).
    pub expired: bool,
}

/// The sessions that exist, by id. A session's id is the index of the entry that opened it:
/// unique in the cluster for all time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    by_id: BTreeMap<u64, SessionRecord>,
}

impl Sessions {
    /// The session `id`, if it exists.
    pub fn get(&self, id: u64) -> Option<&SessionRecord> {
        self.by_id.get(&id)
    }

    /// Every session, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &SessionRecord)> {
        self.by_id.iter().map(|(id, r)| (*id, r))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Opens session `index` (the opening entry's index) with `ttl_ms`, unless the table is
    /// full.
    pub(super) fn open(&mut self, index: u64, ttl_ms: u64) -> SessionOutcome {
        let opened = (self.by_id.len() < MAX_SESSIONS).then_some(ttl_ms);
        if opened.is_some() {
            let record = SessionRecord {
                ttl_ms,
                renewed_at: index,
            };
            self.by_id.insert(index, record);
        }
        SessionOutcome {
            opened,
            ..SessionOutcome::default()
        }
    }

    /// Renews `ids` at `index`; reports those that no longer exist.
    pub(super) fn renew(&mut self, index: u64, ids: &[u64]) -> SessionOutcome {
        let mut outcome = SessionOutcome::default();
        for id in ids {
            match self.by_id.get_mut(id) {
                Some(record) => {
                    record.renewed_at = index;
                    outcome.renewed.push(*id);
                }
                None => outcome.unknown.push(*id),
            }
        }
        outcome
    }

    /// Ends session `id` (a close), if it exists.
    pub(super) fn close(&mut self, id: u64) -> SessionOutcome {
        let ended = self.by_id.remove(&id).map(|_| id).into_iter().collect();
        SessionOutcome {
            ended,
            ..SessionOutcome::default()
        }
    }

    /// Ends session `id` if it was last renewed by entry `renewed_at`: a renewal applied
    /// since the leader measured the session out keeps it.
    pub(super) fn expire(&mut self, id: u64, renewed_at: u64) -> SessionOutcome {
        match self.by_id.get(&id) {
            Some(record) if record.renewed_at == renewed_at => SessionOutcome {
                expired: true,
                ..self.close(id)
            },
            _ => SessionOutcome::default(),
        }
    }

    /// The table as a snapshot lists it: `(id, ttl_ms, renewed_at)` in id order.
    pub(super) fn to_rows(&self) -> Vec<(u64, u64, u64)> {
        self.by_id
            .iter()
            .map(|(id, r)| (*id, r.ttl_ms, r.renewed_at))
            .collect()
    }

    /// The table from a snapshot's rows.
    pub(super) fn from_rows(rows: Vec<(u64, u64, u64)>) -> Sessions {
        let by_id = rows
            .into_iter()
            .map(|(id, ttl_ms, renewed_at)| (id, SessionRecord { ttl_ms, renewed_at }))
            .collect();
        Sessions { by_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_measured_from_an_older_renewal_keeps_the_session() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.open(5, 1000).opened, Some(1000));
        // The leader measured the session out from its opening (5), but a renewal at 9
        // applied first: the expiry proposed meanwhile changes nothing.
        assert_eq!(sessions.renew(9, &[5]).renewed, vec![5]);
        assert_eq!(sessions.expire(5, 5), SessionOutcome::default());
        assert_eq!(sessions.get(5).unwrap().renewed_at, 9);
        // Measured from the renewal itself, it ends.
        let expired = sessions.expire(5, 9);
        assert_eq!((expired.ended, expired.expired), (vec![5], true));
        assert!(sessions.get(5).is_none());
        // Renewing or closing what ended reports it and changes nothing.
        assert_eq!(sessions.renew(12, &[5]).unknown, vec![5]);
        assert_eq!(sessions.close(5), SessionOutcome::default());
    }

    #[test]
    fn rows_round_trip() {
        let mut sessions = Sessions::default();
        sessions.open(3, 1000);
        sessions.open(8, 60_000);
        sessions.renew(11, &[3]);
        let rows = sessions.to_rows();
        assert_eq!(rows, vec![(3, 1000, 11), (8, 60_000, 8)]);
        assert_eq!(Sessions::from_rows(rows), sessions);
    }
}
