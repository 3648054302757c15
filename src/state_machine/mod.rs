//! The built-in replicated key-value state machine and the commands that drive it.
//!
//! Keys are strings; values are opaque bytes (the JS layer stores canonical MessagePack, so
//! byte equality is deep equality of the decoded values). Commands travel MessagePack-encoded
//! in the data of a log entry and are applied deterministically: the same log gives the same
//! state and the same results on every member.

mod command;
mod ephemeral;
pub mod locks;
mod number;
pub mod sessions;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::state_machine::ephemeral::Ephemeral;
use crate::state_machine::locks::{LockOutcome, LockRow, Locks};
use crate::state_machine::sessions::{SessionOutcome, Sessions};
pub use command::{BatchOp, Command};

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 4096;

/// What a snapshot holds: the key-value state and, when the application keeps a state
/// machine of its own for raw commands, that state machine's bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    pub kv: KvStore,
    pub app: Option<Vec<u8>>,
    /// Members' names and URLs, so that a node restored from the snapshot can reach them.
    pub members: Vec<(String, String)>,
    /// Index of the last membership change that took effect (see `MemberInfo::epoch`).
    pub conf_epoch: u64,
}

impl SnapshotData {
    /// MessagePack bytes: `[[key, value]...], app bytes or nil, [[name, url]...], epoch`, and
    /// when sessions exist `[[id, ttl_ms, renewed_at]...], [lock row...], [[key, session]...]`
    /// (see [`locks::LockRow`]; the last are the ephemeral keys; without sessions, the bytes
    /// of the snapshots written before sessions existed).
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_parts(
            &self.kv,
            self.app.as_deref(),
            &self.members,
            self.conf_epoch,
        )
    }

    /// The same bytes, from borrowed parts (no copy of the state).
    pub fn encode_parts(
        kv: &KvStore,
        app: Option<&[u8]>,
        members: &[(String, String)],
        conf_epoch: u64,
    ) -> Vec<u8> {
        /// The pairs as a sequence, straight from the map (no list of them first).
        struct Pairs<'a>(&'a KvStore);
        impl Serialize for Pairs<'_> {
            fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
                s.collect_seq(
                    self.0
                        .map
                        .iter()
                        .map(|(k, v)| (k.as_str(), serde_bytes::Bytes::new(v.as_ref()))),
                )
            }
        }
        // Sized once (keys, values and their few bytes of framing) instead of doubling.
        let payload: usize = kv.map.iter().map(|(k, v)| k.len() + v.len() + 12).sum();
        let mut bytes = Vec::with_capacity(payload + app.map_or(0, <[u8]>::len) + 64);
        let app = app.map(serde_bytes::Bytes::new);
        // Locks belong to sessions: without sessions there are none.
        let written = if kv.sessions.is_empty() {
            rmp_serde::encode::write(&mut bytes, &(Pairs(kv), app, members, conf_epoch))
        } else {
            let sessions = kv.sessions.to_rows();
            let locks = kv.locks.to_rows();
            let ephemeral = kv.ephemeral.to_rows();
            let parts = (
                Pairs(kv),
                app,
                members,
                conf_epoch,
                sessions,
                locks,
                ephemeral,
            );
            rmp_serde::encode::write(&mut bytes, &parts)
        };
        written.expect("the state always encodes");
        bytes
    }

    /// Parses what [`SnapshotData::encode`] wrote; empty bytes are the empty state.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotData, String> {
        if bytes.is_empty() {
            return Ok(SnapshotData::default());
        }
        /// The parts in order; those added later default when an older snapshot ends first.
        #[derive(Deserialize)]
        struct Parts {
            pairs: Vec<(String, ByteBuf)>,
            app: Option<ByteBuf>,
            members: Vec<(String, String)>,
            conf_epoch: u64,
            #[serde(default)]
            sessions: Vec<(u64, u64, u64)>,
            #[serde(default)]
            locks: Vec<LockRow>,
            #[serde(default)]
            ephemeral: Vec<(String, u64)>,
        }
        let Parts {
            pairs,
            app,
            members,
            conf_epoch,
            sessions,
            locks,
            ephemeral,
        } = rmp_serde::from_slice(bytes).map_err(|e| format!("undecodable snapshot: {e}"))?;
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k, Bytes::from(v.into_vec())))
            .collect();
        Ok(SnapshotData {
            kv: KvStore {
                map,
                sessions: Sessions::from_rows(sessions),
                locks: Locks::from_rows(locks),
                ephemeral: Ephemeral::from_rows(ephemeral),
            },
            app: app.map(ByteBuf::into_vec),
            members,
            conf_epoch,
        })
    }
}

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
}

/// The key-value state. Values are shared buffers: a copy of the state (for a snapshot,
/// encoded off the driver's thread) costs the keys and a reference count per value, not
/// the values' bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvStore {
    map: BTreeMap<String, Bytes>,
    sessions: Sessions,
    locks: Locks,
    ephemeral: Ephemeral,
}

impl KvStore {
    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(Bytes::as_ref)
    }

    /// All pairs whose key starts with `prefix`, sorted by key.
    pub fn range(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.to_vec()))
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

    /// Applies the command of entry `index`; the command is consumed so its values move into
    /// the map. With `record`, every key change is listed in the result (copies of key and
    /// values).
    pub fn apply(&mut self, index: u64, command: Command, record: bool) -> ApplyResult {
        let mut result = ApplyResult {
            op: OpKind::Raw,
            changes: Vec::new(),
            ok: true,
            value: None,
            data: None,
            session: SessionOutcome::default(),
            lock: LockOutcome::default(),
            no_session: false,
        };
        // A write in a session that does not exist writes nothing (a batch: all or nothing).
        if !self.sessions_known(&command) {
            result.ok = false;
            result.no_session = true;
            return result;
        }
        match command {
            Command::Set { key, value } => {
                result.op = OpKind::Set;
                let prev = self.put(
                    record,
                    &mut result.changes,
                    key,
                    Some(value.into_vec().into()),
                );
                result.value = prev;
            }
            Command::Delete { key } => {
                result.op = OpKind::Delete;
                let prev = self.put(record, &mut result.changes, key, None);
                result.ok = prev.is_some();
                result.value = prev;
            }
            Command::Cas {
                key,
                expected,
                next,
            } => self.cas(&mut result, record, key, expected, next, None),
            Command::Batch { ops } => {
                result.op = OpKind::Batch;
                for op in ops {
                    match op {
                        BatchOp::Set { key, value } => self.put(
                            record,
                            &mut result.changes,
                            key,
                            Some(value.into_vec().into()),
                        ),
                        BatchOp::Delete { key } => self.put(record, &mut result.changes, key, None),
                        BatchOp::SetEphemeral {
                            key,
                            value,
                            session,
                        } => self.put_in(
                            Some(session),
                            record,
                            &mut result.changes,
                            key,
                            Some(value.into_vec().into()),
                        ),
                    };
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
                result.value = self.put_in(Some(session), record, changes, key, value);
            }
            Command::CasEphemeral {
                key,
                expected,
                next,
                session,
            } => self.cas(&mut result, record, key, expected, next, Some(session)),
            Command::Incr { key, by } => {
                result.op = OpKind::Incr;
                let current = match self.map.get(&key) {
                    None => Some(0.0),
                    Some(bytes) => crate::state_machine::number::read(bytes),
                };
                match current {
                    Some(n) => {
                        let next = Bytes::from(crate::state_machine::number::write(n + by));
                        result.value = Some(next.clone());
                        self.put(record, &mut result.changes, key, Some(next));
                    }
                    None => {
                        result.ok = false;
                        result.value = self.map.get(&key).cloned();
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
        }
        // A session that ended releases its locks and deletes its keys (one entry ends at most
        // one session).
        if let Some(&id) = result.session.ended.first() {
            result.lock.granted = self.locks.session_ended(index, id);
            for key in self.ephemeral.session_ended(id) {
                self.put(record, &mut result.changes, key, None);
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

    /// A compare-and-set (its new value owned by `session`, if any).
    fn cas(
        &mut self,
        result: &mut ApplyResult,
        record: bool,
        key: String,
        expected: Option<ByteBuf>,
        next: Option<ByteBuf>,
        session: Option<u64>,
    ) {
        result.op = OpKind::Cas;
        let current = self.map.get(&key).map(Bytes::as_ref);
        result.ok = current == expected.as_deref().map(|v| v.as_slice());
        if result.ok {
            let next = next.map(|v| Bytes::from(v.into_vec()));
            result.value = next.clone();
            self.put_in(session, record, &mut result.changes, key, next);
        } else {
            result.value = self.map.get(&key).cloned();
        }
    }

    /// Writes or removes one key outside any session (an ephemeral key becomes an ordinary
    /// one), records the change (with `record`), returns the previous value.
    fn put(
        &mut self,
        record: bool,
        changes: &mut Vec<KeyChange>,
        key: String,
        value: Option<Bytes>,
    ) -> Option<Bytes> {
        self.put_in(None, record, changes, key, value)
    }

    /// [`KvStore::put`] of a value that `session` owns (with `Some` of both): an ephemeral
    /// key. Otherwise the key has no owner afterwards.
    fn put_in(
        &mut self,
        session: Option<u64>,
        record: bool,
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
        if !record {
            return match value {
                Some(v) => self.map.insert(key, v),
                None => self.map.remove(&key),
            };
        }
        let prev = match &value {
            Some(v) => self.map.insert(key.clone(), v.clone()),
            None => self.map.remove(&key),
        };
        if value.is_some() || prev.is_some() {
            changes.push(KeyChange {
                key,
                value,
                prev: prev.clone(),
            });
        }
        prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> ByteBuf {
        ByteBuf::from(s.as_bytes().to_vec())
    }

    #[test]
    fn commands_round_trip() {
        let cmds = [
            Command::Set {
                key: "k".into(),
                value: b("v"),
            },
            Command::Delete { key: "k".into() },
            Command::Cas {
                key: "k".into(),
                expected: None,
                next: Some(b("1")),
            },
            Command::Batch {
                ops: vec![
                    BatchOp::Set {
                        key: "a".into(),
                        value: b("1"),
                    },
                    BatchOp::Delete { key: "b".into() },
                ],
            },
            Command::Raw(b("raw")),
            Command::Incr {
                key: "n".into(),
                by: -2.5,
            },
            Command::SessionOpen { ttl_ms: 10_000 },
            Command::SessionRenew { ids: vec![3, 9] },
            Command::SessionClose { id: 3 },
            Command::SessionExpire {
                id: 9,
                renewed_at: 12,
            },
            Command::LockAcquire {
                name: "job".into(),
                session: 3,
                wait: true,
            },
            Command::LockRelease {
                name: "job".into(),
                session: 3,
            },
            Command::LockGrant { name: "job".into() },
            Command::SetEphemeral {
                key: "w".into(),
                value: b("1"),
                session: 3,
            },
            Command::CasEphemeral {
                key: "w".into(),
                expected: None,
                next: Some(b("2")),
                session: 3,
            },
        ];
        for cmd in cmds {
            assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        }
        assert!(Command::decode(b"\xc1garbage").is_err());
    }

    #[test]
    fn coordination_commands_refuse_bad_input() {
        let renewal = |n: u64| Command::SessionRenew {
            ids: (1..=n).collect(),
        };
        assert!(renewal(sessions::MAX_RENEWALS_PER_ENTRY as u64)
            .validate()
            .is_ok());
        let err = renewal(sessions::MAX_RENEWALS_PER_ENTRY as u64 + 1).validate();
        assert!(err.unwrap_err().contains("at most"));
        for name in [String::new(), "x".repeat(MAX_KEY_BYTES + 1)] {
            let acquire = Command::LockAcquire {
                name,
                session: 1,
                wait: true,
            };
            assert!(acquire.validate().unwrap_err().starts_with("name must be"));
        }
    }

    #[test]
    fn apply_table() {
        let mut kv = KvStore::default();
        // (case, command, expected ok, expected value, keys changed)
        let cases: Vec<(&str, Command, bool, Option<&str>, usize)> = vec![
            (
                "set new",
                Command::Set {
                    key: "a".into(),
                    value: b("1"),
                },
                true,
                None,
                1,
            ),
            (
                "set again returns prev",
                Command::Set {
                    key: "a".into(),
                    value: b("2"),
                },
                true,
                Some("1"),
                1,
            ),
            (
                "cas match",
                Command::Cas {
                    key: "a".into(),
                    expected: Some(b("2")),
                    next: Some(b("3")),
                },
                true,
                Some("3"),
                1,
            ),
            (
                "cas mismatch",
                Command::Cas {
                    key: "a".into(),
                    expected: Some(b("2")),
                    next: Some(b("4")),
                },
                false,
                Some("3"),
                0,
            ),
            (
                "cas absent fails on present",
                Command::Cas {
                    key: "a".into(),
                    expected: None,
                    next: Some(b("9")),
                },
                false,
                Some("3"),
                0,
            ),
            (
                "cas absent on absent",
                Command::Cas {
                    key: "z".into(),
                    expected: None,
                    next: Some(b("1")),
                },
                true,
                Some("1"),
                1,
            ),
            (
                "delete existing",
                Command::Delete { key: "z".into() },
                true,
                Some("1"),
                1,
            ),
            (
                "delete missing",
                Command::Delete { key: "z".into() },
                false,
                None,
                0,
            ),
            (
                "batch",
                Command::Batch {
                    ops: vec![
                        BatchOp::Set {
                            key: "b".into(),
                            value: b("x"),
                        },
                        BatchOp::Delete { key: "a".into() },
                    ],
                },
                true,
                None,
                2,
            ),
        ];
        for (case, cmd, ok, value, changed) in cases {
            let r = kv.apply(1, cmd, true);
            assert_eq!(r.ok, ok, "{case}: ok");
            assert_eq!(
                r.value.as_deref(),
                value.map(str::as_bytes),
                "{case}: value"
            );
            assert_eq!(r.changes.len(), changed, "{case}: changes");
        }
        assert_eq!(kv.range(""), vec![("b".to_string(), b"x".to_vec())]);
    }

    #[test]
    fn incr_adds_to_numbers_only() {
        let mut kv = KvStore::default();
        let incr = |by: f64| Command::Incr {
            key: "n".into(),
            by,
        };
        let r = kv.apply(1, incr(5.0), true);
        assert!(r.ok);
        assert_eq!(
            r.value.as_deref(),
            Some(&[0x05u8][..]),
            "absent counts as 0"
        );
        assert_eq!(r.changes.len(), 1);
        let r = kv.apply(1, incr(-7.5), true);
        assert_eq!(
            crate::state_machine::number::read(&r.value.unwrap()),
            Some(-2.5)
        );
        kv.apply(
            1,
            Command::Set {
                key: "n".into(),
                value: ByteBuf::from(vec![0xa1, b'x']),
            },
            false,
        );
        let r = kv.apply(1, incr(1.0), true);
        assert!(!r.ok, "a string is not a number");
        assert!(r.changes.is_empty());
        assert_eq!(kv.get("n").unwrap(), &[0xa1, b'x']);
        assert!(incr(f64::NAN).validate().is_err());
        assert!(incr(f64::INFINITY).validate().is_err());
    }

    #[test]
    fn snapshot_data_round_trips() {
        let mut kv = KvStore::default();
        kv.apply(
            1,
            Command::Set {
                key: "a".into(),
                value: b("1"),
            },
            false,
        );
        for app in [None, Some(b"app state".to_vec())] {
            let data = SnapshotData {
                kv: kv.clone(),
                app,
                members: vec![("n1".to_string(), "ws://h:1".to_string())],
                conf_epoch: 7,
            };
            assert_eq!(SnapshotData::decode(&data.encode()).unwrap(), data);
            // The bytes of snapshots already on disk: a list of pairs, then the rest.
            let pairs: Vec<(String, ByteBuf)> = vec![("a".into(), b("1"))];
            let app = data.app.clone().map(ByteBuf::from);
            let written = rmp_serde::to_vec(&(pairs, app, &data.members, 7u64)).unwrap();
            assert_eq!(data.encode(), written);
        }
        assert_eq!(SnapshotData::decode(b"").unwrap(), SnapshotData::default());
        assert!(SnapshotData::decode(b"\xc1").is_err());
    }

    #[test]
    fn sessions_and_locks_travel_in_snapshots_and_older_snapshots_have_none() {
        let mut kv = KvStore::default();
        kv.apply(3, Command::SessionOpen { ttl_ms: 5000 }, false);
        kv.apply(4, Command::SessionRenew { ids: vec![3, 99] }, false);
        kv.apply(5, Command::SessionOpen { ttl_ms: 5000 }, false);
        let lock = |session| Command::LockAcquire {
            name: "job".into(),
            session,
            wait: true,
        };
        kv.apply(6, lock(3), false);
        kv.apply(7, lock(5), false);
        let data = SnapshotData {
            kv,
            ..SnapshotData::default()
        };
        let back = SnapshotData::decode(&data.encode()).unwrap();
        assert_eq!(back, data);
        let record = back.kv.sessions().get(3).unwrap();
        assert_eq!((record.ttl_ms, record.renewed_at), (5000, 4));
        let job = back.kv.locks().get("job").unwrap();
        assert_eq!(job.holder.map(|h| (h.session, h.fence)), Some((3, 6)));
        assert_eq!(job.waiters, [(5, 7)]);
        // A snapshot written with sessions and before locks existed: five parts.
        let sessions_only = rmp_serde::to_vec(&(
            Vec::<(String, ByteBuf)>::new(),
            None::<ByteBuf>,
            Vec::<(String, String)>::new(),
            0u64,
            vec![(3u64, 5000u64, 4u64)],
        ))
        .unwrap();
        let back = SnapshotData::decode(&sessions_only).unwrap();
        assert_eq!(back.kv.sessions().len(), 1);
        assert!(back.kv.locks().is_empty());
        // A snapshot written before sessions existed: four parts.
        let old = rmp_serde::to_vec(&(
            Vec::<(String, ByteBuf)>::new(),
            None::<ByteBuf>,
            Vec::<(String, String)>::new(),
            0u64,
        ))
        .unwrap();
        assert!(SnapshotData::decode(&old).unwrap().kv.sessions().is_empty());
    }

    #[test]
    fn a_session_end_deletes_its_keys_and_a_plain_write_makes_a_key_ordinary() {
        let mut kv = KvStore::default();
        kv.apply(2, Command::SessionOpen { ttl_ms: 5000 }, true);
        let eph = |key: &str, session| Command::SetEphemeral {
            key: key.into(),
            value: b("v"),
            session,
        };
        // Phase 1: a, b and c in session 2; c written again outside it; d in no session.
        assert!(kv.apply(3, eph("a", 2), true).ok);
        let cas = Command::CasEphemeral {
            key: "b".into(),
            expected: None,
            next: Some(b("w")),
            session: 2,
        };
        assert!(kv.apply(4, cas, true).ok);
        let batch = Command::Batch {
            ops: vec![BatchOp::SetEphemeral {
                key: "c".into(),
                value: b("x"),
                session: 2,
            }],
        };
        kv.apply(5, batch, true);
        kv.apply(
            6,
            Command::Set {
                key: "c".into(),
                value: b("kept"),
            },
            true,
        );
        assert_eq!((kv.owner_of("a"), kv.owner_of("c")), (Some(2), None));
        // Phase 2: writes in a session that does not exist write nothing, all or nothing.
        let refused = kv.apply(7, eph("d", 99), true);
        assert!(refused.no_session && refused.changes.is_empty());
        let mixed = Command::Batch {
            ops: vec![
                BatchOp::Set {
                    key: "e".into(),
                    value: b("1"),
                },
                BatchOp::SetEphemeral {
                    key: "f".into(),
                    value: b("1"),
                    session: 99,
                },
            ],
        };
        assert!(kv.apply(8, mixed, true).no_session);
        assert_eq!((kv.get("d"), kv.get("e")), (None, None));
        // Phase 3: the snapshot keeps the owners; the session's end deletes a and b only.
        let data = SnapshotData {
            kv,
            ..SnapshotData::default()
        };
        let mut kv = SnapshotData::decode(&data.encode()).unwrap().kv;
        assert_eq!(kv, data.kv);
        let ended = kv.apply(9, Command::SessionClose { id: 2 }, true);
        let deleted: Vec<&str> = ended.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(deleted, ["a", "b"]);
        assert!(ended.changes.iter().all(|c| c.value.is_none()));
        assert_eq!(kv.get("c"), Some(&b"kept"[..]));
        assert_eq!(kv.owner_of("a"), None);
    }

    #[test]
    fn range_is_prefix_bounded_and_sorted() {
        let mut kv = KvStore::default();
        for k in ["u/2", "u/1", "v/1", "u", "t"] {
            kv.apply(
                1,
                Command::Set {
                    key: k.into(),
                    value: b(k),
                },
                false,
            );
        }
        let keys: Vec<_> = kv.range("u/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["u/1", "u/2"]);
    }

    #[test]
    fn keys_are_validated() {
        assert!(Command::Set {
            key: "".into(),
            value: b("")
        }
        .validate()
        .is_err());
        assert!(Command::Delete {
            key: "k".repeat(MAX_KEY_BYTES + 1)
        }
        .validate()
        .is_err());
        assert!(Command::Batch {
            ops: vec![BatchOp::Delete { key: "".into() }]
        }
        .validate()
        .is_err());
        assert!(Command::Raw(b("")).validate().is_ok());
    }
}
