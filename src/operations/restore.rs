//! Seeding a new member's data directory from a backup.
//!
//! Every member of the new cluster restores the same backup with the same members (as with
//! etcd's `snapshot restore`): each directory then holds the same snapshot, at the backup's
//! index and term, whose configuration is the new members as voters. Started, the members
//! elect a leader in a later term and go on from the backup's state.

use std::collections::BTreeMap;
use std::path::Path;

use raft::eraftpb::{ConfState, HardState, Snapshot, SnapshotMetadata};

use super::backup::Backup;
use crate::error::{Error, Result};
use crate::ids::{raft_id, validate_name};
use crate::state_machine::SnapshotData;
use crate::storage::{DiskStorage, LogStore, WalOptions};

/// Checks `backup` and writes, in `dir` (absent or empty), the data directory of member
/// `name` of the cluster `members` (name -> URL). Nothing is written unless every check
/// passes. Returns the backup's index and term.
pub fn restore(
    backup: &[u8],
    dir: &Path,
    name: &str,
    members: &BTreeMap<String, String>,
) -> Result<(u64, u64)> {
    validate_name(name).map_err(|e| Error::Invalid(format!("invalid id: {e}")))?;
    for (member, url) in members {
        validate_name(member)
            .map_err(|e| Error::Invalid(format!("invalid member {member:?}: {e}")))?;
        // (An empty URL is learnt later, as in `Config::peers`.)
        if !url.is_empty() {
            crate::config::parse_ws_url(url)
                .map_err(|e| Error::Invalid(format!("peers[{member:?}]: {e}")))?;
        }
    }
    if !members.contains_key(name) {
        return Err(Error::Invalid(format!(
            "peers must name every member of the new cluster, this one ({name}) included"
        )));
    }
    let backup = Backup::decode(backup)?;
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => {
            return Err(Error::Invalid(format!(
                "dataDir {} is not empty: a backup is restored into a new directory",
                dir.display()
            )))
        }
        Ok(false) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Storage(format!(
                "cannot read {}: {e}",
                dir.display()
            )))
        }
    }
    let mut data = SnapshotData::decode(&backup.data).map_err(Error::Invalid)?;
    data.members = members
        .iter()
        .map(|(n, u)| (n.clone(), u.clone()))
        .collect();
    // The new configuration took effect at the backup's index, on every member alike.
    data.conf_epoch = backup.index;
    let snapshot = Snapshot {
        data: data.encode(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: members.keys().map(|n| raft_id(n)).collect(),
                ..Default::default()
            }),
            index: backup.index,
            term: backup.term,
        }),
    };
    let hard_state = HardState {
        term: backup.term,
        vote: 0,
        commit: backup.index,
    };
    let wal = WalOptions {
        segment_bytes: crate::storage::DEFAULT_SEGMENT_BYTES,
        emulate_power_loss: false,
    };
    let mut store = DiskStorage::open(dir, name, None, wal)?;
    store.persist(Some(&snapshot), &[], Some(&hard_state))?;
    Ok((backup.index, backup.term))
}
