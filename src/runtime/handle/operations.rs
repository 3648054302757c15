//! The operations methods of a handle: a backup of the state at a linearizable index
//! (`operations::backup`).

use std::time::Duration;

use super::NodeHandle;
use crate::error::{Error, Result};
use crate::runtime::driver::Request;

impl NodeHandle {
    /// A backup of the state at a linearizable index (every write acknowledged before the
    /// call is in it), as the bytes of a backup file (`operations::backup`), with that
    /// index and its term. Works on any member.
    pub async fn backup(&self, timeout: Duration) -> Result<(u64, u64, Vec<u8>)> {
        let at = self.read_barrier(timeout).await?;
        let point = self
            .ask(timeout, false, |reply| Request::Capture { reply })
            .await?;
        debug_assert!(
            point.index >= at,
            "the state is captured after the read point"
        );
        let encode = move || {
            let data = crate::state_machine::SnapshotData::encode_parts(
                &point.kv,
                None,
                &point.members,
                point.conf_epoch,
            );
            let backup = crate::operations::Backup {
                index: point.index,
                term: point.term,
                conf_state: point.conf_state,
                data,
            };
            (backup.index, backup.term, backup.encode())
        };
        // Encoding is proportional to the state: off the async workers.
        tokio::task::spawn_blocking(encode)
            .await
            .map_err(|e| Error::Internal(format!("backup failed: {e}")))
    }
}
