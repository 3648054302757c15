//! Ephemeral keys: keys written in a session (`set(key, value, { session })`), deleted in
//! the entry that ends it. A later write of the key without the session makes it an ordinary
//! key again; one in another session moves it to that session.

use std::collections::{BTreeMap, BTreeSet};

/// Which session owns each ephemeral key, and the keys of each session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ephemeral {
    owner: BTreeMap<String, u64>,
    keys: BTreeMap<u64, BTreeSet<String>>,
}

impl Ephemeral {
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    /// The session that owns `key`, if it is ephemeral.
    pub fn owner(&self, key: &str) -> Option<u64> {
        self.owner.get(key).copied()
    }

    /// `key` now belongs to `session`.
    pub(super) fn own(&mut self, key: &str, session: u64) {
        self.forget(key);
        self.owner.insert(key.to_string(), session);
        self.keys
            .entry(session)
            .or_default()
            .insert(key.to_string());
    }

    /// `key` was written or deleted outside any session: it is no longer ephemeral.
    pub(super) fn forget(&mut self, key: &str) {
        if let Some(session) = self.owner.remove(key) {
            if let Some(keys) = self.keys.get_mut(&session) {
                keys.remove(key);
                if keys.is_empty() {
                    self.keys.remove(&session);
                }
            }
        }
    }

    /// Session `id` ended: its keys, to delete (no longer owned).
    pub(super) fn session_ended(&mut self, id: u64) -> BTreeSet<String> {
        let keys = self.keys.remove(&id).unwrap_or_default();
        for key in &keys {
            self.owner.remove(key);
        }
        keys
    }

    /// `(key, session)` in key order, as a snapshot lists them.
    pub(super) fn to_rows(&self) -> Vec<(String, u64)> {
        self.owner.iter().map(|(k, s)| (k.clone(), *s)).collect()
    }

    pub(super) fn from_rows(rows: Vec<(String, u64)>) -> Ephemeral {
        let mut ephemeral = Ephemeral::default();
        for (key, session) in rows {
            ephemeral.own(&key, session);
        }
        ephemeral
    }
}
