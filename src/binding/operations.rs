//! Backups, restore, and a stopped member's data directory (`crate::operations`): the node's
//! `backup`, and functions that need no node (the `RaftNode.restore` static and the command
//! line). The JS side writes the bytes where the caller asked and computes their SHA-256.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::errors::{settle, NativeFailure};
use super::{ms, NativeRaftNode};
use crate::error::Error as EngineError;
use crate::operations::replay::{backup_of, read_stopped};
use crate::operations::restore::restore;

/// A backup file's bytes and the index and term it was taken at.
#[napi(object)]
pub struct NativeBackup {
    pub index: f64,
    pub term: f64,
    pub data: Buffer,
}

impl From<(u64, u64, Vec<u8>)> for NativeBackup {
    /// A backup's index, term and file bytes, as the engine gives them.
    fn from((index, term, data): (u64, u64, Vec<u8>)) -> Self {
        NativeBackup {
            index: index as f64,
            term: term as f64,
            data: data.into(),
        }
    }
}

/// Where a restored member starts from.
#[napi(object)]
pub struct NativeRestored {
    pub index: f64,
    pub term: f64,
}

/// A member of a data directory's configuration.
#[napi(object)]
pub struct NativeDirMember {
    pub id: String,
    /// Empty when the directory does not know it.
    pub url: String,
    pub voter: bool,
}

/// What a stopped member's data directory holds.
#[napi(object)]
pub struct NativeInspection {
    pub format: u32,
    /// The member it belongs to (empty when not recorded: written before the record existed).
    pub node: String,
    pub term: f64,
    /// The member voted for in `term` (empty: none).
    pub vote: String,
    pub commit_index: f64,
    pub first_index: f64,
    pub last_index: f64,
    pub snapshot_index: Option<f64>,
    pub snapshot_term: Option<f64>,
    pub snapshot_bytes: Option<f64>,
    /// The state below is at this index (the commit index).
    pub applied_index: f64,
    pub keys: f64,
    pub sessions: f64,
    pub locks: f64,
    pub members: Vec<NativeDirMember>,
}

#[napi]
impl NativeRaftNode {
    /// A backup at a linearizable index (see `NodeHandle::backup`).
    #[napi]
    pub async fn backup(&self, timeout_ms: u32) -> Either<NativeBackup, NativeFailure> {
        let taken = async { self.handle()?.backup(ms(timeout_ms)).await }.await;
        settle(taken, NativeBackup::from)
    }
}

/// Runs `f` off the JS thread and the async workers (it reads or writes whole files).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(EngineError::Internal(format!("the task failed: {e}"))))
}

/// Seeds `data_dir` for member `id` of the cluster `peers` from a backup file's bytes.
#[napi]
pub async fn restore_backup(
    data: Buffer,
    data_dir: String,
    id: String,
    peers: HashMap<String, String>,
) -> Either<NativeRestored, NativeFailure> {
    let data = data.to_vec();
    let peers: BTreeMap<String, String> = peers.into_iter().collect();
    let restored = blocking(move || restore(&data, &PathBuf::from(data_dir), &id, &peers)).await;
    settle(restored, |(index, term)| NativeRestored {
        index: index as f64,
        term: term as f64,
    })
}

/// What the stopped member's data directory `dir` holds.
#[napi]
pub async fn inspect_data_dir(dir: String) -> Either<NativeInspection, NativeFailure> {
    let read = blocking(move || read_stopped(&PathBuf::from(dir))).await;
    settle(read, |(meta, state)| {
        let name_of = |id: u64| {
            state
                .names
                .get(&id)
                .map(|(name, _)| name.clone())
                .unwrap_or_default()
        };
        let (locks, _) = state.kv.locks().counts();
        NativeInspection {
            format: meta.format,
            node: meta.node,
            term: state.hard_state.term as f64,
            vote: name_of(state.hard_state.vote),
            commit_index: state.hard_state.commit as f64,
            first_index: state.first_index as f64,
            last_index: state.last_index as f64,
            snapshot_index: state.snapshot.map(|s| s.0 as f64),
            snapshot_term: state.snapshot.map(|s| s.1 as f64),
            snapshot_bytes: state.snapshot.map(|s| s.2 as f64),
            applied_index: state.applied as f64,
            keys: state.kv.len() as f64,
            sessions: state.kv.sessions().len() as f64,
            locks: locks as f64,
            members: state
                .members()
                .into_iter()
                .map(|(id, url, voter)| NativeDirMember { id, url, voter })
                .collect(),
        }
    })
}

/// A backup of the stopped member's data directory `dir`, at its commit index.
#[napi]
pub async fn backup_data_dir(dir: String) -> Either<NativeBackup, NativeFailure> {
    let made = blocking(move || {
        let (_, state) = read_stopped(&PathBuf::from(dir))?;
        let backup = backup_of(&state);
        Ok((backup.index, backup.term, backup.encode()))
    })
    .await;
    settle(made, NativeBackup::from)
}
