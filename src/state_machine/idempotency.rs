//! Exactly-once writes: a write proposed with an idempotency key applies once; a retry with
//! the same key (from any member, after a timeout or a leader change) finds the first one's
//! result here and applies nothing.
//!
//! The table is part of the replicated state (snapshots carry it), and its retention is
//! counted in entries, not time, so that every member drops the same records at the same
//! index: it keeps the last [`MAX_RECORDS`] keyed writes, and fewer when their keys and
//! results pass [`MAX_RECORD_BYTES`]; the oldest go first.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::txn::TxnOutcome;
use super::ApplyResult;

/// Keyed writes remembered, at most.
pub const MAX_RECORDS: usize = 100_000;

/// Bytes of the keys and results remembered, at most (the oldest records go first).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Longest idempotency key, in bytes of UTF-8.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// The result of a keyed write, as a retry gets it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub index: u64,
    pub term: u64,
    pub ok: bool,
    pub value: Option<Bytes>,
    pub txn: Option<TxnOutcome>,
}

impl Recorded {
    /// What the first write answered.
    pub fn new(index: u64, term: u64, result: &ApplyResult) -> Self {
        Recorded {
            index,
            term,
            ok: result.ok,
            value: result.value.clone(),
            txn: result.txn.clone(),
        }
    }

    /// Bytes it holds, with its key's (an estimate, the same on every member).
    fn size(&self, key: &str) -> usize {
        let values = self.txn.as_ref().map_or(0, TxnOutcome::value_bytes);
        key.len() + self.value.as_ref().map_or(0, Bytes::len) + values + 48
    }
}

/// The keyed writes remembered, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Idempotency {
    by_key: HashMap<String, Recorded>,
    /// Keys in the order they were recorded (log order).
    order: VecDeque<String>,
    bytes: usize,
}

impl Idempotency {
    /// The first result of the write keyed `key`, if it is remembered.
    pub fn get(&self, key: &str) -> Option<&Recorded> {
        self.by_key.get(key)
    }

    /// Keyed writes remembered.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Remembers the first result of the write keyed `key`, and forgets the oldest records
    /// past the bounds.
    pub(super) fn record(&mut self, key: String, recorded: Recorded) {
        debug_assert!(!self.by_key.contains_key(&key), "a retry is never recorded");
        self.bytes += recorded.size(&key);
        self.order.push_back(key.clone());
        self.by_key.insert(key, recorded);
        while self.order.len() > MAX_RECORDS
            || (self.bytes > MAX_RECORD_BYTES && self.order.len() > 1)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.by_key.remove(&oldest) {
                self.bytes -= gone.size(&oldest);
            }
        }
    }

    /// The table as a snapshot lists it, oldest first.
    pub(super) fn to_rows(&self) -> Vec<(String, Recorded)> {
        self.order
            .iter()
            .map(|key| (key.clone(), self.by_key[key].clone()))
            .collect()
    }

    /// The table from a snapshot's rows.
    pub(super) fn from_rows(rows: Vec<(String, Recorded)>) -> Self {
        let mut table = Idempotency::default();
        for (key, recorded) in rows {
            table.record(key, recorded);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(index: u64, value: Option<usize>) -> Recorded {
        Recorded {
            index,
            term: 1,
            ok: true,
            value: value.map(|n| Bytes::from(vec![7u8; n])),
            txn: None,
        }
    }

    #[test]
    fn keeps_the_last_records_and_forgets_the_oldest_first() {
        let mut table = Idempotency::default();
        for i in 0..MAX_RECORDS as u64 + 10 {
            table.record(format!("k{i}"), recorded(i + 1, None));
        }
        assert_eq!(table.len(), MAX_RECORDS);
        assert!(table.get("k9").is_none(), "the ten oldest are gone");
        assert_eq!(table.get("k10").map(|r| r.index), Some(11));
        let back = Idempotency::from_rows(table.to_rows());
        assert_eq!(back, table);
    }

    #[test]
    fn large_results_shorten_the_retention_to_the_byte_bound() {
        let mut table = Idempotency::default();
        let mib = 1 << 20;
        for i in 0..80u64 {
            table.record(format!("k{i}"), recorded(i + 1, Some(mib)));
        }
        assert!(table.len() < 64 && table.len() > 50, "{} kept", table.len());
        assert!(table.bytes <= MAX_RECORD_BYTES);
        assert!(table.get("k79").is_some() && table.get("k0").is_none());
        // One record larger than the bound alone is still kept (until the next).
        table.record("huge".into(), recorded(100, Some(MAX_RECORD_BYTES + 1)));
        assert_eq!(table.len(), 1);
        assert!(table.get("huge").is_some());
    }
}
