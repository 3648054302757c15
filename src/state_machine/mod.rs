//! The built-in replicated key-value state machine and the commands that drive it.
//!
//! Keys are strings; values are opaque bytes (the JS layer stores canonical MessagePack, so
//! byte equality is deep equality of the decoded values). Commands travel MessagePack-encoded
//! in the data of a log entry and are applied deterministically: the same log gives the same
//! state and the same results on every member.

mod command;
mod ephemeral;
pub mod idempotency;
pub mod locks;
mod number;
pub mod sessions;
mod snapshot;
pub mod txn;

use std::collections::btree_map::{BTreeMap, Entry};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::state_machine::ephemeral::Ephemeral;
use crate::state_machine::idempotency::{Idempotency, Recorded};
use crate::state_machine::locks::{LockOutcome, Locks};
use crate::state_machine::sessions::{SessionOutcome, Sessions};
use crate::state_machine::txn::TxnOutcome;
pub use command::{BatchOp, Command};
pub use snapshot::SnapshotData;

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 4096;

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    Set,
    Delete,
    Cas,
    Batch,
    Raw,
    Incr,
    /// A session opened, renewed or ended (the library's own bookkeeping).
    Session,
    /// A lock asked for, released or granted (the library's own bookkeeping).
    Lock,
    /// A transaction (see [`txn`]).
    Txn,
}

/// One key's change: `value: None` means deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub key: String,
    pub value: Option<Bytes>,
    pub prev: Option<Bytes>,
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyResult {
    pub op: OpKind,
    /// Keys changed, in the order they changed.
    pub changes: Vec<KeyChange>,
    /// For `Cas`: whether it matched. For `Delete`: whether the key existed. For `Incr`:
    /// whether the value was a number.
    pub ok: bool,
    /// For `Cas` and `Incr`: the value after the command. For `Set`/`Delete`: the previous
    /// value. (Shared with the state: no copy.)
    pub value: Option<Bytes>,
    /// For `Raw`: the user's bytes.
    pub data: Option<Vec<u8>>,
    /// For the session commands: what changed.
    pub session: SessionOutcome,
    /// For the lock commands, and a session's end: the answer and the grant made.
    pub lock: LockOutcome,
    /// A write in a session that does not exist: refused, nothing written.
    pub no_session: bool,
    /// For `Txn`: which branch ran and what each of its operations did.
    pub txn: Option<TxnOutcome>,
    /// A retry of a keyed write that applied before: nothing applied now, and this is the
    /// first one's result (its index and term, `ok`, `value` and `txn` above).
    pub duplicate_of: Option<(u64, u64)>,
}

impl ApplyResult {
    /// A retry's result: the first write's, and nothing applied.
    fn duplicate(first: &Recorded) -> Self {
        ApplyResult {
            op: OpKind::Raw,
            changes: Vec::new(),
            ok: first.ok,
            value: first.value.clone(),
            data: None,
            session: SessionOutcome::default(),
            lock: LockOutcome::default(),
            no_session: false,
            txn: first.txn.clone(),
            duplicate_of: Some((first.index, first.term)),
        }
    }
}

/// A key's value and its revisions: log indexes, so the same on every member.
///
/// A key deleted and written again starts over (a new `create_index`, version 1). Keys
/// loaded from a snapshot written before revisions existed have indexes 0 and version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The value (shared with copies of the state: no copy of the bytes).
    pub value: Bytes,
    /// Index of the entry that created the key.
    pub create_index: u64,
    /// Index of the entry that last wrote it.
    pub mod_index: u64,
    /// Writes since its creation, that one included.
    pub version: u64,
}

/// The key-value state. Values are shared buffers: a copy of the state (for a snapshot,
/// encoded off the driver's thread) costs the keys and a reference count per value, not
/// the values' bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvStore {
    map: BTreeMap<String, KeyRecord>,
    sessions: Sessions,
    locks: Locks,
    ephemeral: Ephemeral,
    idempotency: Idempotency,
}

impl KvStore {
    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(|r| r.value.as_ref())
    }

    /// The value at `key` with its revisions.
    pub fn record(&self, key: &str) -> Option<&KeyRecord> {
        self.map.get(key)
    }

    /// All pairs whose key starts with `prefix`, sorted by key.
    pub fn range(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.page(prefix, None, usize::MAX)
            .into_iter()
            .map(|(k, r)| (k, r.value.to_vec()))
            .collect()
    }

    /// At most `limit` keys that start with `prefix` and sort after `after` (all of them when
    /// `None`), sorted by key, with their revisions.
    pub fn page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, KeyRecord)> {
        use std::ops::Bound::{Excluded, Included};
        let start = match after {
            Some(after) if after >= prefix => Excluded(after),
            _ => Included(prefix),
        };
        self.map
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The sessions that exist.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The locks held or waited on.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// The session that owns `key`, if it is ephemeral.
    pub fn owner_of(&self, key: &str) -> Option<u64> {
        self.ephemeral.owner(key)
    }

    /// The keyed writes remembered.
    pub fn idempotency(&self) -> &Idempotency {
        &self.idempotency
    }

    /// [`KvStore::apply_entry`] in term 0 (for tests that do not follow terms).
    #[cfg(test)]
    pub fn apply(&mut self, index: u64, command: Command, record: bool) -> ApplyResult {
        self.apply_entry(index, 0, command, record)
    }

    /// Applies the command of entry `index` of `term`; the command is consumed so its values
    /// move into the map. With `record`, every key change is listed in the result (copies of
    /// key and values).
    pub fn apply_entry(
        &mut self,
        index: u64,
        term: u64,
        command: Command,
        record: bool,
    ) -> ApplyResult {
        if let Command::Idempotent { key, command } = command {
            if let Some(first) = self.idempotency.get(&key) {
                return ApplyResult::duplicate(first);
            }
            let result = self.apply_entry(index, term, *command, record);
            if !result.no_session {
                // A write refused for its dead session wrote nothing: a retry is refused too.
                self.idempotency
                    .record(key, Recorded::new(index, term, &result));
            }
            return result;
        }
        let mut result = ApplyResult {
            op: OpKind::Raw,
            changes: Vec::new(),
            ok: true,
            value: None,
            data: None,
            session: SessionOutcome::default(),
            lock: LockOutcome::default(),
            no_session: false,
            txn: None,
            duplicate_of: None,
        };
        let at = Write { index, record };
        // A write in a session that does not exist writes nothing (a batch: all or nothing).
        if !self.sessions_known(&command) {
            result.ok = false;
            result.no_session = true;
            return result;
        }
        match command {
            Command::Set { key, value } => {
                result.op = OpKind::Set;
                let prev = self.put(at, &mut result.changes, key, Some(value.into_vec().into()));
                result.value = prev;
            }
            Command::Delete { key } => {
                result.op = OpKind::Delete;
                let prev = self.put(at, &mut result.changes, key, None);
                result.ok = prev.is_some();
                result.value = prev;
            }
            Command::Cas {
                key,
                expected,
                next,
            } => self.cas(&mut result, at, key, expected, next, None),
            Command::Batch { ops } => {
                result.op = OpKind::Batch;
                for op in ops {
                    // Its key, new value (none: delete) and owning session.
                    let (key, value, session) = match op {
                        BatchOp::Set { key, value } => (key, Some(value), None),
                        BatchOp::Delete { key } => (key, None, None),
                        BatchOp::SetEphemeral {
                            key,
                            value,
                            session,
                        } => (key, Some(value), Some(session)),
                    };
                    let value = value.map(|v| v.into_vec().into());
                    self.put_in(session, at, &mut result.changes, key, value);
                }
            }
            Command::SetEphemeral {
                key,
                value,
                session,
            } => {
                result.op = OpKind::Set;
                let value = Some(value.into_vec().into());
                let changes = &mut result.changes;
                result.value = self.put_in(Some(session), at, changes, key, value);
            }
            Command::CasEphemeral {
                key,
                expected,
                next,
                session,
            } => self.cas(&mut result, at, key, expected, next, Some(session)),
            Command::Incr { key, by } => {
                result.op = OpKind::Incr;
                let current = match self.map.get(&key) {
                    None => Some(0.0),
                    Some(r) => crate::state_machine::number::read(&r.value),
                };
                match current {
                    Some(n) => {
                        let next = Bytes::from(crate::state_machine::number::write(n + by));
                        result.value = Some(next.clone());
                        self.put(at, &mut result.changes, key, Some(next));
                    }
                    None => {
                        result.ok = false;
                        result.value = self.value_of(&key);
                    }
                }
            }
            Command::Raw(data) => result.data = Some(data.into_vec()),
            Command::Refused { .. } => {}
            Command::SessionOpen { ttl_ms } => {
                result.op = OpKind::Session;
                result.session = self.sessions.open(index, ttl_ms);
                result.ok = result.session.opened.is_some();
            }
            Command::SessionRenew { ids } => {
                result.op = OpKind::Session;
                result.session = self.sessions.renew(index, &ids);
                result.ok = result.session.unknown.is_empty();
            }
            Command::SessionClose { id } => {
                result.op = OpKind::Session;
                result.session = self.sessions.close(id);
                result.ok = !result.session.ended.is_empty();
            }
            Command::SessionExpire { id, renewed_at } => {
                result.op = OpKind::Session;
                result.session = self.sessions.expire(id, renewed_at);
                result.ok = !result.session.ended.is_empty();
            }
            Command::LockAcquire {
                name,
                session,
                wait,
            } => {
                result.op = OpKind::Lock;
                result.lock = self
                    .locks
                    .acquire(index, name, session, wait, &self.sessions);
            }
            Command::LockRelease { name, session } => {
                result.op = OpKind::Lock;
                result.lock = self.locks.release(index, &name, session);
            }
            Command::LockGrant { name } => {
                result.op = OpKind::Lock;
                result.lock = self.locks.grant_pending(index, &name);
            }
            Command::Txn(txn) => self.txn(&mut result, at, txn),
            Command::Idempotent { .. } => unreachable!("unwrapped above"),
        }
        // A session that ended releases its locks and deletes its keys (one entry ends at most
        // one session).
        if let Some(&id) = result.session.ended.first() {
            result.lock.granted = self.locks.session_ended(index, id);
            for key in self.ephemeral.session_ended(id) {
                self.put(at, &mut result.changes, key, None);
            }
        }
        result
    }

    /// Whether every session the command writes keys in exists.
    fn sessions_known(&self, command: &Command) -> bool {
        let known = |session: &u64| self.sessions.get(*session).is_some();
        match command {
            Command::SetEphemeral { session, .. } | Command::CasEphemeral { session, .. } => {
                known(session)
            }
            Command::Batch { ops } => ops.iter().all(|op| match op {
                BatchOp::SetEphemeral { session, .. } => known(session),
                BatchOp::Set { .. } | BatchOp::Delete { .. } => true,
            }),
            _ => true,
        }
    }

    /// The value at `key`, shared.
    fn value_of(&self, key: &str) -> Option<Bytes> {
        self.map.get(key).map(|r| r.value.clone())
    }

    /// A compare-and-set (its new value owned by `session`, if any).
    fn cas(
        &mut self,
        result: &mut ApplyResult,
        at: Write,
        key: String,
        expected: Option<ByteBuf>,
        next: Option<ByteBuf>,
        session: Option<u64>,
    ) {
        result.op = OpKind::Cas;
        let current = self.get(&key);
        result.ok = current == expected.as_deref().map(|v| v.as_slice());
        if result.ok {
            let next = next.map(|v| Bytes::from(v.into_vec()));
            result.value = next.clone();
            self.put_in(session, at, &mut result.changes, key, next);
        } else {
            result.value = self.value_of(&key);
        }
    }

    /// Writes or removes one key outside any session (an ephemeral key becomes an ordinary
    /// one), records the change (when `at.record`), returns the previous value.
    fn put(
        &mut self,
        at: Write,
        changes: &mut Vec<KeyChange>,
        key: String,
        value: Option<Bytes>,
    ) -> Option<Bytes> {
        self.put_in(None, at, changes, key, value)
    }

    /// [`KvStore::put`] of a value that `session` owns (with `Some` of both): an ephemeral
    /// key. Otherwise the key has no owner afterwards.
    fn put_in(
        &mut self,
        session: Option<u64>,
        at: Write,
        changes: &mut Vec<KeyChange>,
        key: String,
        value: Option<Bytes>,
    ) -> Option<Bytes> {
        match (session, &value) {
            (Some(session), Some(_)) => self.ephemeral.own(&key, session),
            // One branch on the hot path while no key is ephemeral.
            _ if !self.ephemeral.is_empty() => self.ephemeral.forget(&key),
            _ => {}
        }
        let recorded = at.record.then(|| (key.clone(), value.clone()));
        let prev = match value {
            Some(value) => match self.map.entry(key) {
                Entry::Occupied(mut slot) => {
                    let r = slot.get_mut();
                    r.mod_index = at.index;
                    r.version += 1;
                    Some(std::mem::replace(&mut r.value, value))
                }
                Entry::Vacant(slot) => {
                    slot.insert(KeyRecord {
                        value,
                        create_index: at.index,
                        mod_index: at.index,
                        version: 1,
                    });
                    None
                }
            },
            None => self.map.remove(&key).map(|r| r.value),
        };
        if let Some((key, value)) = recorded {
            if value.is_some() || prev.is_some() {
                let prev = prev.clone();
                changes.push(KeyChange { key, value, prev });
            }
        }
        prev
    }
}

/// Where a write happens: the index of its entry (the revision it gives the keys it
/// writes), and whether its changes are listed in the result.
#[derive(Debug, Clone, Copy)]
struct Write {
    index: u64,
    record: bool,
}

#[cfg(test)]
mod tests;
