//! Transactions: comparisons on keys, then one list of operations or the other, applied in
//! one entry.
//!
//! A comparison holds or not against the state as the entry finds it: a key's existence, its
//! value (byte equality of canonical MessagePack: deep equality of the decoded values), its
//! `mod_index` or its `version` (an absent key has 0 of both). When every comparison holds,
//! `then` runs, otherwise `otherwise`; their operations run in order, so a `Get` sees the
//! writes before it in the same branch. Nothing is written when the branch names a session
//! that does not exist (as for any write in a session).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{ApplyResult, KeyRecord, KvStore, OpKind, Write};

/// At most this many comparisons and operations (of both branches) in one transaction: its
/// entry and its answer stay small, and one entry does bounded work on every member.
pub const MAX_TXN_OPS: usize = 128;

/// A transaction as its entry carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub then: Vec<TxnOp>,
    pub otherwise: Vec<TxnOp>,
}

/// One comparison on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    Exists { key: String, exists: bool },
    Value { key: String, value: ByteBuf },
    ModIndex { key: String, index: u64 },
    Version { key: String, version: u64 },
}

/// One operation of a branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Set {
        key: String,
        value: ByteBuf,
    },
    /// A set whose key belongs to `session` (an ephemeral key).
    SetEphemeral {
        key: String,
        value: ByteBuf,
        session: u64,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
    },
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Whether every comparison held (and `then` ran).
    pub succeeded: bool,
    /// One per operation of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    /// A set or delete: whether the key existed before it.
    Written { existed: bool },
    /// A get: the key's value and revisions, if it exists.
    Read(Option<KeyRecord>),
}

impl TxnOutcome {
    /// Bytes of the values its gets read.
    pub fn value_bytes(&self) -> usize {
        let read = |r: &TxnOpResult| match r {
            TxnOpResult::Read(Some(record)) => record.value.len(),
            _ => 0,
        };
        self.results.iter().map(read).sum()
    }
}

impl Compare {
    /// The key compared.
    pub fn key(&self) -> &str {
        match self {
            Compare::Exists { key, .. }
            | Compare::Value { key, .. }
            | Compare::ModIndex { key, .. }
            | Compare::Version { key, .. } => key,
        }
    }

    /// Whether the comparison holds for the key's `record` (`None`: absent).
    fn holds(&self, record: Option<&KeyRecord>) -> bool {
        match self {
            Compare::Exists { exists, .. } => record.is_some() == *exists,
            Compare::Value { value, .. } => record.is_some_and(|r| r.value == value.as_slice()),
            Compare::ModIndex { index, .. } => record.map_or(0, |r| r.mod_index) == *index,
            Compare::Version { version, .. } => record.map_or(0, |r| r.version) == *version,
        }
    }
}

impl TxnOp {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Set { key, .. }
            | TxnOp::SetEphemeral { key, .. }
            | TxnOp::Delete { key }
            | TxnOp::Get { key } => key,
        }
    }
}

impl Txn {
    /// Checks the bound on its size and every key with `check`.
    pub fn validate(&self, check: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
        let count = self.compares.len() + self.then.len() + self.otherwise.len();
        if count > MAX_TXN_OPS {
            return Err(format!(
                "a transaction has at most {MAX_TXN_OPS} comparisons and operations, got {count}"
            ));
        }
        let compared = self.compares.iter().map(Compare::key);
        let touched = self.then.iter().chain(&self.otherwise).map(TxnOp::key);
        compared.chain(touched).try_for_each(check)
    }

    /// Bytes of keys and values, to size its encoding.
    pub(super) fn payload(&self) -> usize {
        let compared = self.compares.iter().map(|c| match c {
            Compare::Value { key, value } => key.len() + value.len() + 8,
            other => other.key().len() + 12,
        });
        let touched = self.then.iter().chain(&self.otherwise).map(|op| match op {
            TxnOp::Set { key, value } | TxnOp::SetEphemeral { key, value, .. } => {
                key.len() + value.len() + 16
            }
            other => other.key().len() + 8,
        });
        compared.chain(touched).sum()
    }
}

impl KvStore {
    /// Applies a transaction at `at`.
    pub(super) fn txn(&mut self, result: &mut ApplyResult, at: Write, txn: Txn) {
        result.op = OpKind::Txn;
        let succeeded = txn.compares.iter().all(|c| c.holds(self.map.get(c.key())));
        let ops = if succeeded { txn.then } else { txn.otherwise };
        let known = |session: &u64| self.sessions.get(*session).is_some();
        let sessions_exist = ops.iter().all(|op| match op {
            TxnOp::SetEphemeral { session, .. } => known(session),
            _ => true,
        });
        if !sessions_exist {
            result.ok = false;
            result.no_session = true;
            return;
        }
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            // A write: its key, new value (none: delete) and owning session.
            let (key, value, session) = match op {
                TxnOp::Get { key } => {
                    results.push(TxnOpResult::Read(self.map.get(&key).cloned()));
                    continue;
                }
                TxnOp::Set { key, value } => (key, Some(value), None),
                TxnOp::SetEphemeral {
                    key,
                    value,
                    session,
                } => (key, Some(value), Some(session)),
                TxnOp::Delete { key } => (key, None, None),
            };
            let value = value.map(|v| v.into_vec().into());
            let prev = self.put_in(session, at, &mut result.changes, key, value);
            results.push(TxnOpResult::Written {
                existed: prev.is_some(),
            });
        }
        result.ok = succeeded;
        result.txn = Some(TxnOutcome { succeeded, results });
    }
}
