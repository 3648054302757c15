//! The changes this node applied lately, so that a watch can start from a past index: it
//! replays the changes after that index from here, then goes on with live ones, with no gap
//! and no duplicate. A watch from before what is kept gets the state of its prefix at the
//! last applied index instead (a resync), then the changes after it.
//!
//! The history is written under the state's write lock, entry by entry as they apply, and
//! read under its read lock: a reader sees the history and the state at the same index.
//! It is this node's memory, not replicated state: every member keeps its own. A node keeps
//! it from its first watch on ([`ChangeHistory::keep`]): recording every change costs about
//! a tenth of the write throughput (a copy of each key and a shared reference to each value,
//! freed 100,000 changes later), which a node that serves no watch does not pay.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::state_machine::{KeyChange, KvStore};

/// Changes kept, at most.
pub const MAX_HISTORY_CHANGES: usize = 100_000;

/// Bytes of keys and values kept, at most (values are shared with the state while current).
pub const MAX_HISTORY_BYTES: usize = 64 << 20;

/// What a watch from an index gets before the live changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Every change under the prefix after the index asked for, up to `through` (the last
    /// index applied): live changes go on after `through`.
    Changes {
        through: u64,
        changes: Vec<(u64, KeyChange)>,
    },
    /// The index asked for is older than the history: the prefix's pairs at `index` (the
    /// last applied), in key order; live changes go on after it.
    Resync {
        index: u64,
        entries: Vec<(String, Bytes)>,
    },
}

/// The changes of the last entries applied, oldest first.
#[derive(Debug, Default)]
pub struct ChangeHistory {
    changes: VecDeque<(u64, KeyChange)>,
    bytes: usize,
    /// Every change of an entry after this index is kept.
    covered_from: u64,
    /// The last index applied.
    through: u64,
    /// Changes are kept (from the first watch on).
    recording: bool,
}

fn size(change: &KeyChange) -> usize {
    let len = |v: &Option<Bytes>| v.as_ref().map_or(0, Bytes::len);
    change.key.len() + len(&change.value) + len(&change.prev) + 64
}

impl ChangeHistory {
    /// An empty history of a state at `index` (a snapshot's, or 0).
    pub fn starting_at(index: u64) -> Self {
        ChangeHistory {
            covered_from: index,
            through: index,
            ..ChangeHistory::default()
        }
    }

    /// The state was replaced by a snapshot's at `index`: the changes before it are gone.
    pub(crate) fn reset(&mut self, index: u64) {
        let recording = self.recording;
        *self = ChangeHistory::starting_at(index);
        self.recording = recording;
    }

    /// Keeps the changes applied from now on (idempotent).
    pub fn keep(&mut self) {
        self.recording = true;
    }

    /// Whether changes are kept.
    pub fn recording(&self) -> bool {
        self.recording
    }

    /// Entry `index` applied with `changes` (maybe none); the oldest entries' changes go
    /// past the bounds, whole entries at a time.
    pub(crate) fn applied(&mut self, index: u64, changes: Vec<KeyChange>) {
        self.through = index;
        if !self.recording {
            self.covered_from = index;
            return;
        }
        for change in changes {
            self.bytes += size(&change);
            self.changes.push_back((index, change));
        }
        while self.changes.len() > MAX_HISTORY_CHANGES || self.bytes > MAX_HISTORY_BYTES {
            let Some((oldest, _)) = self.changes.front() else {
                break;
            };
            let oldest = *oldest;
            while self.changes.front().is_some_and(|(i, _)| *i == oldest) {
                if let Some((_, change)) = self.changes.pop_front() {
                    self.bytes -= size(&change);
                }
            }
            self.covered_from = oldest;
        }
    }

    /// The last index applied.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// What a watch of `prefix` from after `from` gets first (`kv`: the state at
    /// [`ChangeHistory::through`], read under the same lock).
    pub fn since(&self, from: u64, prefix: &str, kv: &KvStore) -> Since {
        if from < self.covered_from {
            let entries = kv
                .page(prefix, None, usize::MAX)
                .into_iter()
                .map(|(k, r)| (k, r.value))
                .collect();
            return Since::Resync {
                index: self.through,
                entries,
            };
        }
        let start = self.changes.partition_point(|(i, _)| *i <= from);
        let changes = self
            .changes
            .range(start..)
            .filter(|(_, c)| c.key.starts_with(prefix))
            .cloned()
            .collect();
        Since::Changes {
            through: self.through,
            changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: &str) -> KeyChange {
        KeyChange {
            key: key.into(),
            value: Some(Bytes::from(value.to_string())),
            prev: None,
        }
    }

    fn indexes(since: Since) -> Vec<u64> {
        match since {
            Since::Changes { changes, .. } => changes.into_iter().map(|(i, _)| i).collect(),
            Since::Resync { .. } => panic!("a resync"),
        }
    }

    #[test]
    fn replays_after_an_index_under_a_prefix_and_resyncs_before_what_it_keeps() {
        let kv = KvStore::default();
        let mut history = ChangeHistory::starting_at(10);
        // Before the first watch nothing is kept: a watch from before then resyncs.
        history.applied(11, vec![change("a/0", "w")]);
        assert!(matches!(
            history.since(10, "", &kv),
            Since::Resync { index: 11, .. }
        ));
        history.keep();
        history.reset(10);
        history.applied(11, vec![change("a/1", "x"), change("b/1", "y")]);
        history.applied(12, vec![]);
        history.applied(13, vec![change("a/2", "z")]);
        assert_eq!(indexes(history.since(10, "", &kv)), [11, 11, 13]);
        assert_eq!(indexes(history.since(11, "a/", &kv)), [13]);
        assert_eq!(indexes(history.since(13, "", &kv)), Vec::<u64>::new());
        assert_eq!(indexes(history.since(99, "", &kv)), Vec::<u64>::new());
        assert!(matches!(
            history.since(9, "", &kv),
            Since::Resync { index: 13, .. }
        ));
        // A snapshot installed: nothing before it is kept.
        history.reset(20);
        assert!(matches!(
            history.since(13, "", &kv),
            Since::Resync { index: 20, .. }
        ));
        assert_eq!(history.through(), 20);
    }

    #[test]
    fn forgets_whole_entries_past_its_bounds() {
        let kv = KvStore::default();
        let mut history = ChangeHistory::starting_at(0);
        history.keep();
        // Entries of three changes each: the bound falls inside an entry.
        for index in 1..=(MAX_HISTORY_CHANGES as u64 / 3 + 2) {
            let changes = (0..3).map(|k| change(&format!("k{k}"), "v")).collect();
            history.applied(index, changes);
        }
        assert!(history.changes.len() <= MAX_HISTORY_CHANGES);
        assert_eq!(history.changes.len() % 3, 0, "whole entries only");
        let first_kept = history.changes.front().unwrap().0;
        assert_eq!(history.covered_from, first_kept - 1);
        assert!(matches!(
            history.since(first_kept - 2, "", &kv),
            Since::Resync { .. }
        ));
        assert_eq!(
            indexes(history.since(first_kept - 1, "", &kv)).len(),
            history.changes.len()
        );
    }
}
