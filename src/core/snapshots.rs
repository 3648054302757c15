//! Snapshots a node takes of its own state. At a snapshot point the driver captures the state
//! (cheap: the key-value state shares its values' buffers); the slow part, encoding it and
//! making it durable, runs off the driver's thread ([`SnapshotJob::run`]), so that a large
//! state never holds up ticks and heartbeats; the store then adopts the snapshot and
//! compacts the log behind it.

use raft::eraftpb::{ConfState, Snapshot, SnapshotMetadata};

use crate::error::Result;
use crate::state_machine::{KvStore, SnapshotData};
use crate::storage::SnapshotSink;

/// The replicated state at an applied index, as a snapshot will hold it.
pub struct SnapshotPoint {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub kv: KvStore,
    /// Members' names and URLs.
    pub members: Vec<(String, String)>,
    pub conf_epoch: u64,
}

/// A snapshot to encode and make durable, on any thread.
pub struct SnapshotJob {
    point: SnapshotPoint,
    /// The application's state machine bytes (with app snapshots).
    app: Option<Vec<u8>>,
    sink: SnapshotSink,
}

impl SnapshotJob {
    pub fn new(point: SnapshotPoint, app: Option<Vec<u8>>, sink: SnapshotSink) -> SnapshotJob {
        SnapshotJob { point, app, sink }
    }

    /// Encodes the state and writes it where the store keeps snapshots (fsynced); the
    /// store adopts the result on the driver ([`crate::storage::LogStore::adopt_snapshot`]).
    pub fn run(self) -> Result<Snapshot> {
        let SnapshotPoint {
            index,
            term,
            conf_state,
            kv,
            members,
            conf_epoch,
        } = self.point;
        let data = SnapshotData::encode_parts(&kv, self.app.as_deref(), &members, conf_epoch);
        drop(kv);
        let snapshot = Snapshot {
            data,
            metadata: Some(SnapshotMetadata {
                conf_state: Some(conf_state),
                index,
                term,
            }),
        };
        self.sink.write(&snapshot)?;
        Ok(snapshot)
    }
}
