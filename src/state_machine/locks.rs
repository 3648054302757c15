//! Locks in the replicated state: who holds each, with which fence, and who waits, in order.
//!
//! A lock belongs to a session ([`super::sessions`]): it is held until its session releases
//! it or ends, and a session's end (close or expiry) releases every lock it holds and leaves
//! every queue it waits in, in that entry. Waiters are served first come, first served: in the
//! order of the entries that asked.
//!
//! A grant's fence is the index of the entry that made it, and no entry makes two grants, so
//! fences strictly increase over all grants in the cluster. The only entry that would free
//! several locks with waiters at once is a session's end: it grants the first of them (by
//! name) and leaves the others *pending*, each granted by a [`Command::LockGrant`] entry of
//! its own that the leader appends at once (see `core::locks`).
//!
//! [`Command::LockGrant`]: super::Command::LockGrant

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::sessions::Sessions;

/// Most sessions waiting on one lock; one more `lock()` fails with `ERR_OVERLOADED`.
pub const MAX_WAITERS_PER_LOCK: usize = 100_000;
/// Most locks held or waited on in the cluster; one more fails with `ERR_OVERLOADED`.
pub const MAX_LOCKS: usize = 100_000;

/// A lock's holder: its session and the fence of its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub session: u64,
    pub fence: u64,
}

/// One lock as every member holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockRecord {
    pub holder: Option<Holder>,
    /// Sessions waiting, first come first: `(session, index of the entry that asked)`.
    pub waiters: VecDeque<(u64, u64)>,
}

/// A grant made by one entry: `session` holds `name` with `fence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub session: u64,
    pub fence: u64,
}

/// What a lock command answers its proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReply {
    /// The session holds the lock with this fence (granted now, or held already: asking
    /// again finds the grant, as a retried request must).
    Granted { fence: u64 },
    /// The session waits in the queue (it was already waiting: same place).
    Queued,
    /// Held by another session or waited on, and the request did not want to wait.
    Busy,
    /// The session does not exist (it ended, or never did).
    NoSession,
    /// The lock's queue or the table is full.
    Full,
    /// A release: whether the session held the lock or waited for it.
    Released { held: bool, waited: bool },
}

/// What applying one lock command or session end did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOutcome {
    /// The answer to the proposer of a lock command.
    pub reply: Option<LockReply>,
    /// The grant this entry made, if any (at most one: fences are unique).
    pub granted: Option<Grant>,
}

/// Every lock held or waited on, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locks {
    by_name: BTreeMap<String, LockRecord>,
    /// The names each session holds or waits on.
    by_session: BTreeMap<u64, BTreeSet<String>>,
    /// Free locks with waiters, each to be granted by an entry of its own.
    pending: BTreeSet<String>,
}

impl Locks {
    /// The lock `name`, if anyone holds or waits on it.
    pub fn get(&self, name: &str) -> Option<&LockRecord> {
        self.by_name.get(name)
    }

    /// Locks held or waited on.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Locks held, and sessions waiting over all locks.
    pub fn counts(&self) -> (usize, usize) {
        let held = self.by_name.values().filter(|r| r.holder.is_some()).count();
        let waiting = self.by_name.values().map(|r| r.waiters.len()).sum();
        (held, waiting)
    }

    /// Free locks whose next waiter awaits a grant entry.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().map(String::as_str)
    }

    /// `session` asks for `name` in entry `index`; `wait`: join the queue when it is taken.
    pub(super) fn acquire(
        &mut self,
        index: u64,
        name: String,
        session: u64,
        wait: bool,
        sessions: &Sessions,
    ) -> LockOutcome {
        let reply = |reply| LockOutcome {
            reply: Some(reply),
            granted: None,
        };
        if sessions.get(session).is_none() {
            return reply(LockReply::NoSession);
        }
        if let Some(record) = self.by_name.get(&name) {
            if let Some(holder) = record.holder.filter(|h| h.session == session) {
                return reply(LockReply::Granted {
                    fence: holder.fence,
                });
            }
            if record.waiters.iter().any(|(s, _)| *s == session) {
                return reply(LockReply::Queued);
            }
        } else if self.by_name.len() >= MAX_LOCKS {
            return reply(LockReply::Full);
        }
        let record = self.by_name.entry(name.clone()).or_default();
        // Free and nobody waiting (a pending lock has waiters, who come first).
        if record.holder.is_none() && record.waiters.is_empty() {
            record.holder = Some(Holder {
                session,
                fence: index,
            });
            self.by_session
                .entry(session)
                .or_default()
                .insert(name.clone());
            return LockOutcome {
                reply: Some(LockReply::Granted { fence: index }),
                granted: Some(Grant {
                    name,
                    session,
                    fence: index,
                }),
            };
        }
        if !wait {
            return reply(LockReply::Busy);
        }
        if record.waiters.len() >= MAX_WAITERS_PER_LOCK {
            return reply(LockReply::Full);
        }
        record.waiters.push_back((session, index));
        self.by_session.entry(session).or_default().insert(name);
        reply(LockReply::Queued)
    }

    /// `session` releases `name` (or leaves its queue) in entry `index`; the next waiter is
    /// granted in the same entry.
    pub(super) fn release(&mut self, index: u64, name: &str, session: u64) -> LockOutcome {
        let (held, waited) = self.leave(name, session);
        let granted = if held {
            self.grant_next(index, name)
        } else {
            None
        };
        self.forget_if_unused(name);
        LockOutcome {
            reply: Some(LockReply::Released { held, waited }),
            granted,
        }
    }

    /// Session `id` ended in entry `index`: it releases what it holds and leaves every queue.
    /// The first lock it frees with waiters (by name) is granted in this entry; the others
    /// become pending.
    pub(super) fn session_ended(&mut self, index: u64, id: u64) -> Option<Grant> {
        let names = self.by_session.remove(&id).unwrap_or_default();
        let mut granted = None;
        for name in names {
            let (held, _) = self.leave(&name, id);
            let has_waiters = self
                .by_name
                .get(&name)
                .is_some_and(|r| !r.waiters.is_empty());
            if held && has_waiters {
                if granted.is_none() {
                    granted = self.grant_next(index, &name);
                } else {
                    self.pending.insert(name.clone());
                }
            }
            // A pending lock whose every waiter left is simply free.
            if !has_waiters {
                self.pending.remove(&name);
            }
            self.forget_if_unused(&name);
        }
        granted
    }

    /// Entry `index` grants pending lock `name` to its next waiter (nothing if it is no
    /// longer pending: a grant entry proposed twice, or by two leaders).
    pub(super) fn grant_pending(&mut self, index: u64, name: &str) -> LockOutcome {
        let granted = if self.pending.remove(name) {
            self.grant_next(index, name)
        } else {
            None
        };
        LockOutcome {
            reply: None,
            granted,
        }
    }

    /// Removes `session` as holder or waiter of `name`: `(held, waited)`.
    fn leave(&mut self, name: &str, session: u64) -> (bool, bool) {
        let Some(record) = self.by_name.get_mut(name) else {
            return (false, false);
        };
        let held = record.holder.is_some_and(|h| h.session == session);
        if held {
            record.holder = None;
        }
        let before = record.waiters.len();
        record.waiters.retain(|(s, _)| *s != session);
        let waited = record.waiters.len() < before;
        if held || waited {
            if let Some(names) = self.by_session.get_mut(&session) {
                names.remove(name);
                if names.is_empty() {
                    self.by_session.remove(&session);
                }
            }
        }
        (held, waited)
    }

    /// Grants free lock `name` to its first waiter with fence `index`.
    fn grant_next(&mut self, index: u64, name: &str) -> Option<Grant> {
        let record = self.by_name.get_mut(name)?;
        debug_assert!(record.holder.is_none());
        let (session, _) = record.waiters.pop_front()?;
        record.holder = Some(Holder {
            session,
            fence: index,
        });
        self.pending.remove(name);
        Some(Grant {
            name: name.to_string(),
            session,
            fence: index,
        })
    }

    fn forget_if_unused(&mut self, name: &str) {
        if self
            .by_name
            .get(name)
            .is_some_and(|r| r.holder.is_none() && r.waiters.is_empty())
        {
            self.by_name.remove(name);
            self.pending.remove(name);
        }
    }

    /// The table as a snapshot lists it: `(name, holder, waiters, pending)` in name order.
    pub(super) fn to_rows(&self) -> Vec<LockRow> {
        self.by_name
            .iter()
            .map(|(name, r)| {
                let holder = r.holder.map(|h| (h.session, h.fence));
                let waiters = r.waiters.iter().copied().collect();
                (name.clone(), holder, waiters, self.pending.contains(name))
            })
            .collect()
    }

    /// The table from a snapshot's rows.
    pub(super) fn from_rows(rows: Vec<LockRow>) -> Locks {
        let mut locks = Locks::default();
        for (name, holder, waiters, pending) in rows {
            let holder = holder.map(|(session, fence)| Holder { session, fence });
            let sessions = holder.map(|h| h.session).into_iter();
            for session in sessions.chain(waiters.iter().map(|(s, _)| *s)) {
                locks
                    .by_session
                    .entry(session)
                    .or_default()
                    .insert(name.clone());
            }
            if pending {
                locks.pending.insert(name.clone());
            }
            let waiters = waiters.into_iter().collect();
            locks.by_name.insert(name, LockRecord { holder, waiters });
        }
        locks
    }
}

/// One lock in a snapshot: name, `(session, fence)` of its holder, `(session, asked at)` of
/// each waiter, and whether it awaits a grant entry.
pub type LockRow = (String, Option<(u64, u64)>, Vec<(u64, u64)>, bool);

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(ids: &[u64]) -> Sessions {
        let mut sessions = Sessions::default();
        for id in ids {
            sessions.open(*id, 1000);
        }
        sessions
    }

    fn fence(outcome: &LockOutcome) -> Option<u64> {
        outcome.granted.as_ref().map(|g| g.fence)
    }

    #[test]
    fn waiters_are_served_in_the_order_they_asked_with_increasing_fences() {
        let s = sessions(&[1, 2, 3]);
        let mut locks = Locks::default();
        // Phase 1: session 1 takes the lock; 2 and 3 queue; a try by 3 again is Queued.
        let first = locks.acquire(10, "job".into(), 1, true, &s);
        assert_eq!(first.reply, Some(LockReply::Granted { fence: 10 }));
        assert_eq!(
            locks.acquire(11, "job".into(), 2, true, &s).reply,
            Some(LockReply::Queued)
        );
        assert_eq!(
            locks.acquire(12, "job".into(), 3, true, &s).reply,
            Some(LockReply::Queued)
        );
        assert_eq!(
            locks.acquire(13, "job".into(), 3, false, &s).reply,
            Some(LockReply::Queued)
        );
        // Asking again while holding finds the grant (a retried request).
        assert_eq!(
            locks.acquire(14, "job".into(), 1, true, &s).reply,
            Some(LockReply::Granted { fence: 10 })
        );
        // Phase 2: releases hand it on in order, each with the releasing entry's index.
        let next = locks.release(20, "job", 1);
        assert_eq!(
            next.reply,
            Some(LockReply::Released {
                held: true,
                waited: false
            })
        );
        assert_eq!(
            next.granted,
            Some(Grant {
                name: "job".into(),
                session: 2,
                fence: 20
            })
        );
        assert_eq!(fence(&locks.release(25, "job", 2)), Some(25));
        assert_eq!(
            locks.get("job").unwrap().holder,
            Some(Holder {
                session: 3,
                fence: 25
            })
        );
        // Phase 3: releasing twice changes nothing; the last release forgets the lock.
        assert_eq!(
            locks.release(26, "job", 2).reply,
            Some(LockReply::Released {
                held: false,
                waited: false
            })
        );
        assert_eq!(fence(&locks.release(27, "job", 3)), None);
        assert!(locks.is_empty());
        assert!(locks.by_session.is_empty());
    }

    #[test]
    fn a_try_on_a_taken_lock_is_busy_and_an_unknown_session_gets_nothing() {
        let s = sessions(&[1, 2]);
        let mut locks = Locks::default();
        locks.acquire(5, "a".into(), 1, true, &s);
        assert_eq!(
            locks.acquire(6, "a".into(), 2, false, &s).reply,
            Some(LockReply::Busy)
        );
        assert_eq!(
            locks.acquire(7, "a".into(), 9, true, &s).reply,
            Some(LockReply::NoSession)
        );
        assert_eq!(locks.get("a").unwrap().waiters.len(), 0);
    }

    #[test]
    fn a_session_end_grants_one_lock_in_its_entry_and_leaves_the_others_pending() {
        let s = sessions(&[1, 2, 3]);
        let mut locks = Locks::default();
        // Session 1 holds a and b; 2 waits on both, 3 waits on b; 1 also waits on c (held by 3).
        locks.acquire(10, "a".into(), 1, true, &s);
        locks.acquire(11, "b".into(), 1, true, &s);
        locks.acquire(12, "c".into(), 3, true, &s);
        locks.acquire(13, "a".into(), 2, true, &s);
        locks.acquire(14, "b".into(), 3, true, &s);
        locks.acquire(15, "c".into(), 1, true, &s);
        // Session 1 ends at 20: a goes to 2 at once, b is pending, c's queue loses 1.
        let granted = locks.session_ended(20, 1);
        assert_eq!(
            granted,
            Some(Grant {
                name: "a".into(),
                session: 2,
                fence: 20
            })
        );
        assert_eq!(locks.pending().collect::<Vec<_>>(), vec!["b"]);
        assert!(locks.get("b").unwrap().holder.is_none());
        assert!(locks.get("c").unwrap().waiters.is_empty());
        // Someone else asking for b meanwhile queues behind 3.
        assert_eq!(
            locks.acquire(21, "b".into(), 2, false, &s).reply,
            Some(LockReply::Busy)
        );
        // The grant entry gives b to 3; a second grant entry for b does nothing.
        assert_eq!(fence(&locks.grant_pending(22, "b")), Some(22));
        assert_eq!(fence(&locks.grant_pending(23, "b")), None);
        assert_eq!(
            locks.get("b").unwrap().holder,
            Some(Holder {
                session: 3,
                fence: 22
            })
        );
        assert!(!locks.by_session.contains_key(&1));
    }

    #[test]
    fn a_pending_lock_whose_waiters_all_leave_is_forgotten() {
        let s = sessions(&[1, 2, 3]);
        let mut locks = Locks::default();
        locks.acquire(10, "a".into(), 1, true, &s);
        locks.acquire(11, "b".into(), 1, true, &s);
        locks.acquire(12, "a".into(), 2, true, &s);
        locks.acquire(13, "b".into(), 3, true, &s);
        assert!(locks.session_ended(20, 1).is_some());
        assert_eq!(locks.pending().count(), 1);
        // Session 3, b's only waiter, ends before the grant entry.
        assert_eq!(locks.session_ended(21, 3), None);
        assert_eq!(locks.pending().count(), 0);
        assert!(locks.get("b").is_none());
        assert_eq!(fence(&locks.grant_pending(22, "b")), None);
    }

    #[test]
    fn rows_round_trip() {
        let s = sessions(&[1, 2, 3]);
        let mut locks = Locks::default();
        locks.acquire(10, "a".into(), 1, true, &s);
        locks.acquire(11, "b".into(), 1, true, &s);
        locks.acquire(12, "a".into(), 2, true, &s);
        locks.acquire(13, "b".into(), 3, true, &s);
        locks.session_ended(20, 1);
        let rows = locks.to_rows();
        assert_eq!(Locks::from_rows(rows), locks);
    }
}
