//! Watches from a past index: what this node applied after it (or a resync), read under
//! the state's lock; the live changes follow as `apply` events (see `js/watch.js`).

use napi_derive::napi;

use super::errors::{thrown, Thrown};
use super::events::{change, NativeChange};
use super::kv::NativeEntry;
use super::NativeRaftNode;
use crate::core::history::Since;

/// A change of the history, with the index of its entry.
#[napi(object)]
pub struct NativeIndexedChange {
    pub index: f64,
    pub change: NativeChange,
}

/// What a watch from an index gets before the live changes: `changes` up to `through`, or
/// (`resync`) the prefix's `entries` at `through`.
#[napi(object)]
pub struct NativeSince {
    pub through: f64,
    pub resync: bool,
    pub changes: Vec<NativeIndexedChange>,
    pub entries: Vec<NativeEntry>,
}

#[napi]
impl NativeRaftNode {
    /// From now on this node keeps the changes it applies (a watch started: it may resume
    /// from an index later).
    #[napi]
    pub fn keep_history(&self) -> std::result::Result<(), Thrown> {
        self.handle().map_err(thrown)?.keep_history();
        Ok(())
    }

    /// The changes under `prefix` after index `from` that this node applied, or a resync
    /// when it no longer keeps them. Call it with applied events on, in the same turn as
    /// the watch starts listening to them.
    #[napi]
    pub fn changes_since(
        &self,
        prefix: String,
        from: f64,
    ) -> std::result::Result<NativeSince, Thrown> {
        let handle = self.handle().map_err(thrown)?;
        Ok(match handle.changes_since(&prefix, from as u64) {
            Since::Changes { through, changes } => NativeSince {
                through: through as f64,
                resync: false,
                changes: changes
                    .into_iter()
                    .map(|(index, c)| NativeIndexedChange {
                        index: index as f64,
                        change: change(c),
                    })
                    .collect(),
                entries: Vec::new(),
            },
            Since::Resync { index, entries } => NativeSince {
                through: index as f64,
                resync: true,
                changes: Vec::new(),
                entries: entries
                    .into_iter()
                    .map(|(key, value)| NativeEntry {
                        key,
                        value: value.to_vec().into(),
                    })
                    .collect(),
            },
        })
    }
}
