//! Locks as this node takes part in them (the replicated table is
//! [`crate::state_machine::locks`]). Two duties:
//!
//! 1. **Tell.** A grant to a session this node keeps is reported (`Event::LockGranted`) after
//!    the Ready's applied entries, whichever entry made it: the request itself, a release, a
//!    session's end or a grant entry.
//! 2. **Grant.** The leader appends a `LockGrant` entry for each pending lock (freed with
//!    waiters by a session's end that could grant only one lock in its own entry), and again
//!    after an election timeout if that entry was lost.

use std::collections::HashMap;

use super::*;
use crate::state_machine::locks::LockOutcome;

/// The grant entries this leader proposed, by lock name, and when.
#[derive(Default)]
pub(super) struct LockKeeper {
    granting: HashMap<String, Instant>,
}

impl<S: LogStore> Core<S> {
    /// Entry `index` did what `outcome` says to a lock: a grant to a session of this node's
    /// is reported.
    pub(super) fn locks_applied(&mut self, outcome: &LockOutcome) {
        let Some(grant) = &outcome.granted else {
            return;
        };
        self.locks.granting.remove(&grant.name);
        if self.sessions.keeps(grant.session) {
            self.outbox.sessions.push(Event::LockGranted {
                name: grant.name.clone(),
                session: grant.session,
                fence: grant.fence,
            });
        }
    }

    /// On each tick, on the leader: a grant entry for each pending lock not proposed within
    /// an election timeout.
    pub(super) fn grant_pending_locks(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.locks.granting.clear();
            return;
        }
        let now = self.time.clock.now();
        let retry = self.time.election;
        let pending: Vec<String> = {
            let kv = self.kv.read().recover();
            kv.locks().pending().map(str::to_string).collect()
        };
        self.locks.granting.retain(|name, _| pending.contains(name));
        for name in pending {
            let proposed = self.locks.granting.get(&name);
            if proposed.is_some_and(|at| now.duration_since(*at) < retry) {
                continue;
            }
            let data = Command::LockGrant { name: name.clone() }.encode();
            if self.raw.propose(Vec::new(), data).is_ok() {
                self.locks.granting.insert(name, now);
            }
        }
    }
}
