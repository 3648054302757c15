//! The raft log store the driver persists into: in memory, or durable on disk.

//!
//! [`LogStore`] adds to the raft crate's read-only [`raft::Storage`] the one write the driver
//! makes per Ready: snapshot, entries and hard state together (group commit). Durable
//! implementations make that one write and one fsync.

mod disk;
mod wal;

pub use disk::DiskStorage;
pub use wal::DEFAULT_SEGMENT_BYTES;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
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

    /// Stores a snapshot of the state machine at applied `index` and compacts the log before
    /// it, keeping `keep_entries` for slightly lagging followers. Returns the snapshot's size,
    /// or `None` where the store does not take snapshots.
    fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: Vec<u8>,
        keep_entries: u64,
    ) -> Result<Option<u64>>;

    /// The newest snapshot, to restore the state machine from on start.
    fn newest_snapshot(&self) -> Option<&Snapshot>;

    /// True when `persist` blocks on the disk (the driver then lets other tasks move off
    /// its thread while it waits).
    fn is_durable(&self) -> bool {
        false
    }
}

/// A fresh in-memory store whose initial voters are `voters`.
pub fn mem_storage(voters: Vec<u64>) -> MemStorage {
    MemStorage::new_with_conf_state(ConfState::from((voters, vec![])))
}

impl LogStore for MemStorage {
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        let mut core = self.wl();
        if let Some(snapshot) = snapshot {
            core.apply_snapshot(snapshot.clone())
                .map_err(|e| Error::Storage(e.to_string()))?;
        }
        if !entries.is_empty() {
            core.append(entries)
                .map_err(|e| Error::Storage(e.to_string()))?;
        }
        if let Some(hs) = hard_state {
            core.set_hardstate(hs.clone());
        }
        Ok(())
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        self.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    /// In memory the log is the only copy of the state: it is never compacted.
    fn create_snapshot(&mut self, _: u64, _: ConfState, _: Vec<u8>, _: u64) -> Result<Option<u64>> {
        Ok(None)
    }

    fn newest_snapshot(&self) -> Option<&Snapshot> {
        None
    }
}
