//! The coordination methods of a handle: sessions and locks (see `state_machine::sessions`
//! and `state_machine::locks`).

use std::time::Duration;

use super::{NodeHandle, WriteOptions};
use crate::error::{Error, Result};
use crate::state_machine::locks::LockReply;
use crate::state_machine::Command;
use crate::sync::Recover;

impl NodeHandle {
    /// Opens a session kept alive by this node, with `ttl` (at least ten heartbeats, at most
    /// a day); resolves with its id, unique in the cluster for all time. The node renews it
    /// until [`NodeHandle::close_session`], or until it reports it lost
    /// (`Event::SessionEnded`). `Overloaded` when the cluster holds its most sessions.
    pub async fn open_session(&self, ttl: Duration, options: WriteOptions) -> Result<u64> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let outcome = self.write(Command::SessionOpen { ttl_ms }, options).await?;
        if !outcome.ok {
            let max = crate::state_machine::sessions::MAX_SESSIONS;
            return Err(Error::Overloaded(format!(
                "the cluster holds {max} sessions"
            )));
        }
        Ok(outcome.index)
    }

    /// Ends session `id` now (idempotent: `false` when it had ended already).
    pub async fn close_session(&self, id: u64, options: WriteOptions) -> Result<bool> {
        let outcome = self.write(Command::SessionClose { id }, options).await?;
        Ok(outcome.ok)
    }

    /// Session `session` asks for lock `name`: `Granted { fence }` (now, or held already),
    /// `Queued` (with `wait`: an `Event::LockGranted` follows when its turn comes) or `Busy`
    /// (without `wait`). `SessionLost` when the session does not exist; `Overloaded` past
    /// [`MAX_WAITERS_PER_LOCK`](crate::state_machine::locks::MAX_WAITERS_PER_LOCK) or
    /// [`MAX_LOCKS`](crate::state_machine::locks::MAX_LOCKS).
    pub async fn lock(
        &self,
        name: &str,
        session: u64,
        wait: bool,
        options: WriteOptions,
    ) -> Result<LockReply> {
        let command = Command::LockAcquire {
            name: name.to_string(),
            session,
            wait,
        };
        let outcome = self.write(command, options).await?;
        match outcome.lock {
            Some(LockReply::NoSession) => Err(Error::SessionLost(format!(
                "session {session} does not exist (it ended)"
            ))),
            Some(LockReply::Full) => Err(Error::Overloaded(format!(
                "lock {name:?} has {} waiters, or the cluster holds {} locks",
                crate::state_machine::locks::MAX_WAITERS_PER_LOCK,
                crate::state_machine::locks::MAX_LOCKS
            ))),
            Some(reply) => Ok(reply),
            None => Err(Error::Internal("a lock request got no answer".into())),
        }
    }

    /// Session `session` releases lock `name` or leaves its queue (idempotent: `false` when
    /// it neither held nor waited).
    pub async fn unlock(&self, name: &str, session: u64, options: WriteOptions) -> Result<bool> {
        let command = Command::LockRelease {
            name: name.to_string(),
            session,
        };
        let outcome = self.write(command, options).await?;
        Ok(matches!(
            outcome.lock,
            Some(LockReply::Released { held, waited }) if held || waited
        ))
    }

    /// How much longer session `id`, kept by this node, may be counted on: `None` once it
    /// is not (lost, closed, or never kept here). Read without the driver, so a stalled
    /// driver cannot make it late: the holder stops when this runs out.
    pub fn session_valid_for(&self, id: u64) -> Option<Duration> {
        let deadlines = self.inner.session_deadlines.lock().recover();
        let until = deadlines.get(&id)?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// The sessions that exist, as this node has applied them: `(id, ttl)`.
    pub fn sessions(&self) -> Vec<(u64, Duration)> {
        let kv = self.inner.kv.read().recover();
        kv.sessions()
            .iter()
            .map(|(id, r)| (id, Duration::from_millis(r.ttl_ms)))
            .collect()
    }
}
