//! The state of a data directory at its commit index, read without starting a node: the
//! newest snapshot, then the committed entries after it, applied as a node applies them
//! (commands to the state machine; membership changes through the raft crate's own
//! configuration changer, skipping those of a stale epoch as `core::members` does).

use std::collections::BTreeMap;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::GetEntriesContext;

use crate::error::{Error, Result};
use crate::ids::raft_id;
use crate::membership::{decode_conf_change, MemberInfo};
use crate::state_machine::{Command, KvStore, SnapshotData};
use crate::storage::LogStore;

/// Entries read from the store at a time.
const CHUNK: u64 = 4096;

/// A data directory's state, as [`state_at_commit`] rebuilt it.
pub struct DirState {
    pub hard_state: HardState,
    /// The first and last index of the log kept after the snapshot (first > last: none).
    pub first_index: u64,
    pub last_index: u64,
    /// The newest snapshot: index, term and size of its state.
    pub snapshot: Option<(u64, u64, usize)>,
    /// The index and term the state below is at.
    pub applied: u64,
    pub applied_term: u64,
    /// The configuration at `applied` (joint while a change is half done).
    pub conf_state: ConfState,
    /// Every member's name and URL (URL empty when unknown), by raft id.
    pub names: BTreeMap<u64, (String, String)>,
    /// Index of the last membership change that took effect.
    pub conf_epoch: u64,
    pub kv: KvStore,
}

impl DirState {
    /// The raft ids of the configuration's voters (outgoing ones of a joint configuration
    /// included) and of its learners (those that will be included), each sorted.
    pub fn member_ids(&self) -> (Vec<u64>, Vec<u64>) {
        let cs = &self.conf_state;
        let sorted = |ids: &mut Vec<u64>| {
            ids.sort_unstable();
            ids.dedup();
        };
        let mut voters: Vec<u64> = cs
            .voters
            .iter()
            .chain(&cs.voters_outgoing)
            .copied()
            .collect();
        sorted(&mut voters);
        let mut learners: Vec<u64> = cs
            .learners
            .iter()
            .chain(&cs.learners_next)
            .copied()
            .collect();
        sorted(&mut learners);
        learners.retain(|id| !voters.contains(id));
        (voters, learners)
    }

    /// The name and URL of member `id` (`#` and its id in hex when no entry named it; the URL
    /// empty when unknown).
    pub fn name_of(&self, id: u64) -> (String, String) {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| (format!("#{id:016x}"), String::new()))
    }

    /// The members of the configuration: (name, URL, voter), voters first.
    pub fn members(&self) -> Vec<(String, String, bool)> {
        let (voters, learners) = self.member_ids();
        voters
            .iter()
            .map(|&id| (self.name_of(id), true))
            .chain(learners.iter().map(|&id| (self.name_of(id), false)))
            .map(|((name, url), voter)| (name, url, voter))
            .collect()
    }

    /// The state as snapshot bytes (what a backup holds), with the members' names and URLs.
    pub fn snapshot_data(&self) -> Vec<u8> {
        let members: Vec<(String, String)> = self
            .members()
            .into_iter()
            .map(|(name, url, _)| (name, url))
            .collect();
        SnapshotData::encode_parts(&self.kv, None, &members, self.conf_epoch)
    }
}

/// How far [`state_at`] applies the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upto {
    /// The commit index the store recorded (up to date after a clean stop; after a crash, it
    /// may lag what was committed).
    Commit,
    /// Every entry the store holds, committed or not.
    Last,
}

/// Rebuilds the state of `store` at its commit index.
pub fn state_at_commit<S: LogStore>(store: &S) -> Result<DirState> {
    state_at(store, Upto::Commit)
}

/// Rebuilds the state of `store` with its log applied as far as `upto` says.
pub fn state_at<S: LogStore>(store: &S, upto: Upto) -> Result<DirState> {
    let storage_error = |e: raft::Error| Error::Storage(e.to_string());
    let initial = store.initial_state().map_err(storage_error)?;
    let hard_state = initial.hard_state;
    let mut state = DirState {
        hard_state: hard_state.clone(),
        first_index: store.first_index().map_err(storage_error)?,
        last_index: store.last_index().map_err(storage_error)?,
        snapshot: None,
        applied: 0,
        applied_term: 0,
        conf_state: ConfState::default(),
        names: BTreeMap::new(),
        conf_epoch: 0,
        kv: KvStore::default(),
    };
    // The configuration is tracked by the raft crate itself, from the snapshot's.
    let mem = MemStorage::new();
    if let Some(snapshot) = store.newest_snapshot() {
        let meta = snapshot.get_metadata().clone();
        let data = SnapshotData::decode(&snapshot.data).map_err(Error::Storage)?;
        state.snapshot = Some((meta.index, meta.term, snapshot.data.len()));
        state.applied = meta.index;
        state.applied_term = meta.term;
        state.conf_epoch = data.conf_epoch;
        state.kv = data.kv;
        for (name, url) in data.members {
            state.names.insert(raft_id(&name), (name, url));
        }
        let bare = Snapshot {
            data: Vec::new(),
            metadata: Some(meta),
        };
        mem.wl()
            .apply_snapshot(bare)
            .map_err(|e| Error::Storage(e.to_string()))?;
    }
    let config = raft::Config {
        id: u64::MAX,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut tracker = raft::Raft::new(&config, mem, &logger)
        .map_err(|e| Error::Storage(format!("cannot read the configuration: {e}")))?;
    let commit = match upto {
        Upto::Commit => hard_state.commit.min(state.last_index),
        Upto::Last => state.last_index,
    };
    let mut next = state.applied + 1;
    while next <= commit {
        let high = (next + CHUNK).min(commit + 1);
        let entries = store
            .entries(next, high, None, GetEntriesContext::empty(false))
            .map_err(storage_error)?;
        for entry in entries {
            apply(&mut state, &mut tracker, entry);
        }
        next = high;
    }
    state.conf_state = tracker.prs().conf().to_conf_state();
    Ok(state)
}

fn apply(state: &mut DirState, tracker: &mut raft::Raft<MemStorage>, entry: Entry) {
    state.applied = entry.index;
    state.applied_term = entry.term;
    match entry.get_entry_type() {
        EntryType::EntryNormal if entry.data.is_empty() => {}
        EntryType::EntryNormal => match Command::decode(&entry.data) {
            Ok(Command::Refused { .. }) | Err(_) => {}
            Ok(command) => {
                state
                    .kv
                    .apply_entry(entry.index, entry.term, command, false);
            }
        },
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
            let Ok(change) = decode_conf_change(&entry) else {
                return;
            };
            let info = MemberInfo::decode(&change.context);
            if info
                .as_ref()
                .and_then(|i| i.epoch)
                .is_some_and(|epoch| epoch != state.conf_epoch)
            {
                return;
            }
            if let Some(info) = info {
                let known = state.names.entry(raft_id(&info.name)).or_default();
                known.0 = info.name;
                if !info.url.is_empty() {
                    known.1 = info.url;
                }
            }
            if tracker.apply_conf_change(&change).is_ok() {
                state.conf_epoch = entry.index;
            }
        }
    }
}

/// Opens the data directory of a stopped member (refused while a node runs on it, or when
/// `dir` is not a data directory) and rebuilds its state at the commit index.
pub fn read_stopped(
    dir: &std::path::Path,
) -> Result<(crate::storage::meta::DataDirMeta, DirState)> {
    if !dir.join("wal").is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a raftline data directory (it has no wal/)",
            dir.display()
        )));
    }
    let wal = crate::storage::WalOptions {
        segment_bytes: crate::storage::DEFAULT_SEGMENT_BYTES,
        emulate_power_loss: false,
    };
    let store = crate::storage::DiskStorage::open(dir, "", None, wal)?;
    let state = state_at_commit(&store)?;
    Ok((store.meta().clone(), state))
}

/// A backup of `state` (what a running member's backup at the same index holds).
pub fn backup_of(state: &DirState) -> super::Backup {
    super::Backup {
        index: state.applied,
        term: state.applied_term,
        conf_state: state.conf_state.clone(),
        data: state.snapshot_data(),
    }
}
