//! The raft log store the driver persists into: in memory, or durable on disk.

//!
//! [`LogStore`] adds to the raft crate's read-only [`raft::Storage`] the one write the driver
//! makes per Ready: snapshot, entries and hard state together (group commit). Durable
//! implementations make that one write and one fsync.

/// Implements the raft crate's read-only `Storage` for a store that mirrors its live log in
/// `self.mem` (a `MemStorage`) and keeps its newest snapshot, data included, in
/// `self.snapshot`. (A blanket impl over a trait would be refused: `Storage` is foreign.)
macro_rules! mirrored_storage {
    ($store:ty) => {
        impl raft::Storage for $store {
            fn initial_state(&self) -> raft::Result<raft::RaftState> {
                self.mem.initial_state()
            }

            fn entries(
                &self,
                low: u64,
                high: u64,
                max_size: impl Into<Option<u64>>,
                context: raft::GetEntriesContext,
            ) -> raft::Result<Vec<raft::eraftpb::Entry>> {
                $crate::storage::entries_within(&self.mem, low, high, max_size.into(), context)
            }

            fn term(&self, idx: u64) -> raft::Result<u64> {
                self.mem.term(idx)
            }

            fn first_index(&self) -> raft::Result<u64> {
                self.mem.first_index()
            }

            fn last_index(&self) -> raft::Result<u64> {
                self.mem.last_index()
            }

            /// The newest snapshot, when it covers `request_index`.
            fn snapshot(
                &self,
                request_index: u64,
                _to: u64,
            ) -> raft::Result<raft::eraftpb::Snapshot> {
                let index = self.snapshot.get_metadata().index;
                if index > 0 && index >= request_index {
                    Ok(self.snapshot.clone())
                } else {
                    Err(raft::Error::Store(
                        raft::StorageError::SnapshotTemporarilyUnavailable,
                    ))
                }
            }
        }
    };
}

mod disk;
pub mod meta;
mod wal;

#[cfg(test)]
mod tests;

pub use disk::DiskStorage;
pub use wal::DEFAULT_SEGMENT_BYTES;

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::storage::MemStorage;

use crate::error::{Error, Result};

/// A raft log that the driver can persist into.
pub trait LogStore: raft::Storage + Send + 'static {
    /// Persists, as one durable write: a received snapshot (when given), then the new
    /// entries, then the hard state (when it changed).
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()>;

    /// Records a commit index learnt from a light ready (no durability needed: a lost commit
    /// index is learnt again from the leader).
    fn set_commit(&mut self, commit: u64) -> Result<()>;

    /// Where snapshots of this node's own state are made durable, off the driver's thread
    /// (see [`crate::core::snapshots`]).
    fn snapshot_sink(&self) -> SnapshotSink;

    /// Takes `snapshot`, of the state machine at its applied index and made durable by
    /// [`LogStore::snapshot_sink`], as the newest, and compacts the log before it but for
    /// `keep_entries` (for slightly lagging followers). A snapshot no newer than the one
    /// held (one from the leader was installed meanwhile) is dropped: returns whether it
    /// was taken.
    fn adopt_snapshot(&mut self, snapshot: Snapshot, keep_entries: u64) -> Result<bool>;

    /// The newest snapshot, to restore the state machine from on start.
    fn newest_snapshot(&self) -> Option<&Snapshot>;

    /// True when `persist` blocks on the disk (the driver then lets other tasks move off
    /// its thread while it waits).
    fn is_durable(&self) -> bool {
        false
    }

    /// Fsyncs of the log so far (0 for a store that keeps it in memory).
    fn syncs(&self) -> u64 {
        0
    }

    /// Makes everything persisted so far durable, the records `persist` did not wait for
    /// included (a hard state that only moved the commit index).
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The log a new cluster starts from (as etcd's bootstrap does): one committed conf change
/// per initial voter, at indexes 1..=n in term 1, carrying its name and URL. Every initial
/// member writes the same entries, and a node that joins later replays them from the leader
/// and so learns the whole configuration.
pub fn bootstrap_log(members: &[(String, String)]) -> (Vec<Entry>, HardState) {
    use prost::Message as _;
    use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, EntryType};
    let mut sorted: Vec<&(String, String)> = members.iter().collect();
    sorted.sort();
    sorted.dedup_by(|a, b| a.0 == b.0);
    let entries: Vec<Entry> = sorted
        .iter()
        .enumerate()
        .map(|(i, (name, url))| {
            let change = ConfChangeV2 {
                changes: vec![ConfChangeSingle {
                    change_type: ConfChangeType::AddNode as i32,
                    node_id: crate::ids::raft_id(name),
                }],
                context: crate::membership::MemberInfo {
                    name: name.clone(),
                    url: url.clone(),
                    epoch: None,
                }
                .encode(),
                ..Default::default()
            };
            Entry {
                entry_type: EntryType::EntryConfChangeV2 as i32,
                term: 1,
                index: i as u64 + 1,
                data: change.encode_to_vec(),
                ..Default::default()
            }
        })
        .collect();
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: entries.len() as u64,
    };
    (entries, hard_state)
}

/// What a fresh store starts with: the bootstrap log, or nothing for a node that joins.
pub type Bootstrap = Option<(Vec<Entry>, HardState)>;

/// How a durable store writes its log.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// A new segment starts past this size.
    pub segment_bytes: u64,
    /// Test-only: keep writes in memory until each fsync, as a power loss would lose them.
    pub emulate_power_loss: bool,
}

/// The entries `[low, high)` of `mem`, as many as fit in `max_size` bytes (at least one), as
/// the raft crate's `Storage::entries` promises. The raft crate's `MemStorage` copies the
/// whole range before it cuts it to size: a leader replicating to a follower far behind
/// copied the follower's whole backlog for every 1 MiB append it sent (quadratic: with 256
/// MiB behind, one turn of the leader's driver took seconds and its quorum lapsed). Here the
/// range is read in doubling steps, so at most about twice what is returned is copied.
fn entries_within(
    mem: &MemStorage,
    low: u64,
    high: u64,
    max_size: Option<u64>,
    context: raft::GetEntriesContext,
) -> raft::Result<Vec<Entry>> {
    use prost::Message as _;
    use raft::Storage as _;
    let Some(max) = max_size.filter(|&max| max != u64::MAX) else {
        return mem.entries(low, high, None, context);
    };
    let mut entries = Vec::new();
    let mut size = 0u64;
    let (mut next, mut step) = (low, 1u64);
    while next < high {
        let end = next.saturating_add(step).min(high);
        for entry in mem.entries(next, end, None, raft::GetEntriesContext::empty(false))? {
            size += entry.encoded_len() as u64;
            if !entries.is_empty() && size > max {
                return Ok(entries);
            }
            entries.push(entry);
        }
        next = end;
        step = step.saturating_mul(2);
    }
    Ok(entries)
}

/// Where a store's own snapshots are made durable.
#[derive(Debug, Clone)]
pub enum SnapshotSink {
    /// Kept in memory only: nothing to write.
    Memory,
    /// A file in this directory (written aside, fsynced, renamed, directory fsynced).
    Dir(std::path::PathBuf),
}

impl SnapshotSink {
    /// Makes `snapshot` durable; a slow call (fsync), made off the driver's thread.
    pub fn write(&self, snapshot: &Snapshot) -> Result<()> {
        match self {
            SnapshotSink::Memory => Ok(()),
            SnapshotSink::Dir(dir) => disk::write_snapshot_file(dir, snapshot),
        }
    }
}

/// True when `snapshot` is newer than `held`.
fn is_newer(snapshot: &Snapshot, held: &Snapshot) -> bool {
    snapshot.get_metadata().index > held.get_metadata().index
}

/// Appends `entries` and records `hard_state` in the in-memory copy of the log (the raft
/// crate reads from it; durable stores write the disk first).
fn mirror(mem: &MemStorage, entries: &[Entry], hard_state: Option<&HardState>) -> Result<()> {
    let mut core = mem.wl();
    if !entries.is_empty() {
        core.append(entries)
            .map_err(|e| Error::Storage(e.to_string()))?;
    }
    if let Some(hs) = hard_state {
        core.set_hardstate(hs.clone());
    }
    Ok(())
}

/// Drops the entries a snapshot at `index` covers, but for a tail of `keep_entries` so that
/// slightly lagging followers catch up without a snapshot. Returns the first index kept.
fn compact(mem: &MemStorage, index: u64, keep_entries: u64) -> Result<u64> {
    use raft::Storage as _;
    let compact_to = index.saturating_sub(keep_entries);
    if compact_to > mem.first_index().unwrap_or(1) {
        mem.wl()
            .compact(compact_to)
            .map_err(|e| Error::Storage(format!("cannot compact the log: {e}")))?;
    }
    Ok(compact_to)
}

/// The in-memory log: the raft crate's `MemStorage` plus the newest snapshot (taken here or
/// installed from a leader). Like a durable log it is compacted behind each snapshot, so that
/// memory is bounded by the state, not by the history of writes.
pub struct MemLog {
    mem: MemStorage,
    snapshot: Snapshot,
}

/// A fresh in-memory store: from `bootstrap`, or empty for a node that joins.
pub fn mem_storage(bootstrap: Bootstrap) -> MemLog {
    let mem = MemStorage::new();
    if let Some((entries, hard_state)) = bootstrap {
        let mut core = mem.wl();
        core.append(&entries)
            .expect("a fresh store takes the bootstrap log");
        core.set_hardstate(hard_state);
    }
    MemLog {
        mem,
        snapshot: Snapshot::default(),
    }
}

mirrored_storage!(MemLog);

impl LogStore for MemLog {
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        if let Some(snapshot) = snapshot {
            self.mem
                .wl()
                .apply_snapshot(snapshot.clone())
                .map_err(|e| Error::Storage(e.to_string()))?;
            self.snapshot = snapshot.clone();
        }
        mirror(&self.mem, entries, hard_state)
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        self.mem.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    fn snapshot_sink(&self) -> SnapshotSink {
        SnapshotSink::Memory
    }

    fn adopt_snapshot(&mut self, snapshot: Snapshot, keep_entries: u64) -> Result<bool> {
        if !is_newer(&snapshot, &self.snapshot) {
            return Ok(false);
        }
        let index = snapshot.get_metadata().index;
        self.snapshot = snapshot;
        compact(&self.mem, index, keep_entries)?;
        Ok(true)
    }

    fn newest_snapshot(&self) -> Option<&Snapshot> {
        (self.snapshot.get_metadata().index > 0).then_some(&self.snapshot)
    }
}
