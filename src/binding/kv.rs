//! The key-value methods that do not cross in batches (`batch.rs`): multi-key batches,
//! local reads and prefix reads.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::convert::NativeWriteResult;
use super::errors::{settle, thrown, NativeFailure, Thrown};
use super::{ms, NativeRaftNode, NativeWriteOptions};
use crate::state_machine::KeyRecord;
use crate::{BatchOp, Command, Consistency, Error as EngineError, ReadOptions};

/// One operation of a batch.
#[napi(object)]
pub struct NativeBatchOp {
    /// `"set"` or `"delete"`.
    pub op: String,
    pub key: String,
    pub value: Option<Buffer>,
    /// A set's session (an ephemeral key).
    pub session: Option<f64>,
}

/// One key-value pair.
#[napi(object)]
pub struct NativeEntry {
    pub key: String,
    pub value: Buffer,
}

/// A key's value and revisions.
#[napi(object)]
pub struct NativeKeyRecord {
    pub value: Buffer,
    pub create_index: f64,
    pub mod_index: f64,
    pub version: f64,
    /// The session that owns the key, if it is ephemeral.
    pub session: Option<f64>,
}

impl NativeKeyRecord {
    /// The record as JS gets it (its value's bytes copied out of the state).
    pub fn new(record: &KeyRecord, session: Option<u64>) -> Self {
        NativeKeyRecord {
            value: record.value.to_vec().into(),
            create_index: record.create_index as f64,
            mod_index: record.mod_index as f64,
            version: record.version as f64,
            session: session.map(|s| s as f64),
        }
    }
}

/// Read options from the JS layer's words.
fn read_options(consistency: &str, timeout_ms: u32) -> crate::Result<ReadOptions> {
    let consistency = match consistency {
        "linearizable" => Consistency::Linearizable,
        "lease" => Consistency::Lease,
        "local" => Consistency::Local,
        other => {
            return Err(EngineError::Invalid(format!(
                "consistency must be 'linearizable', 'lease' or 'local', got {other:?}"
            )))
        }
    };
    Ok(ReadOptions {
        consistency,
        timeout: ms(timeout_ms),
    })
}

impl NativeRaftNode {
    /// Writes `command` and settles with its outcome.
    async fn write_command(
        &self,
        command: Command,
        opts: NativeWriteOptions,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let (command, options) = opts.write(command);
        let written = async { self.handle()?.write(command, options).await }.await;
        settle(written, NativeWriteResult::from)
    }
}

#[napi]
impl NativeRaftNode {
    /// Applies `ops` atomically in one entry. (Single writes and reads cross in batches:
    /// see `batch.rs`.)
    #[napi]
    pub async fn batch(
        &self,
        ops: Vec<NativeBatchOp>,
        opts: NativeWriteOptions,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let ops = ops
            .into_iter()
            .map(|op| match (op.op.as_str(), op.value) {
                ("set", Some(value)) => Ok(match op.session {
                    None => BatchOp::Set {
                        key: op.key,
                        value: value.to_vec().into(),
                    },
                    Some(session) => BatchOp::SetEphemeral {
                        key: op.key,
                        value: value.to_vec().into(),
                        session: session as u64,
                    },
                }),
                ("delete", _) => Ok(BatchOp::Delete { key: op.key }),
                (other, _) => Err(EngineError::Invalid(format!("invalid batch op {other:?}"))),
            })
            .collect::<crate::Result<Vec<_>>>();
        let written = async {
            let (command, options) = opts.write(Command::Batch { ops: ops? });
            self.handle()?.write(command, options).await
        }
        .await;
        settle(written, |mut outcome| {
            outcome.value = None;
            NativeWriteResult::from(outcome)
        })
    }

    /// Sets `key` to `value` in session `session`: the key is deleted when it ends.
    #[napi]
    pub async fn set_ephemeral(
        &self,
        key: String,
        value: Buffer,
        session: f64,
        opts: NativeWriteOptions,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let command = Command::SetEphemeral {
            key,
            value: value.to_vec().into(),
            session: session as u64,
        };
        self.write_command(command, opts).await
    }

    /// Compare-and-set whose new value belongs to session `session`.
    #[napi]
    pub async fn cas_ephemeral(
        &self,
        key: String,
        expected: Option<Buffer>,
        next: Option<Buffer>,
        session: f64,
        opts: NativeWriteOptions,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let command = Command::CasEphemeral {
            key,
            expected: expected.map(|v| v.to_vec().into()),
            next: next.map(|v| v.to_vec().into()),
            session: session as u64,
        };
        self.write_command(command, opts).await
    }

    /// Synchronous read of this node's applied state.
    #[napi]
    pub fn get_local(&self, key: String) -> std::result::Result<Option<Buffer>, Thrown> {
        let handle = self.handle().map_err(thrown)?;
        Ok(handle.get_local(&key).map(Buffer::from))
    }

    /// At most `limit` pairs under `prefix` after the key `after` (all: `None`), sorted by key.
    #[napi]
    pub async fn entries(
        &self,
        prefix: String,
        consistency: String,
        timeout_ms: u32,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Either<Vec<NativeEntry>, NativeFailure> {
        let options = read_options(&consistency, timeout_ms);
        let limit = limit.map_or(usize::MAX, |n| n as usize);
        let pairs = async {
            let handle = self.handle()?;
            handle
                .page(&prefix, after.as_deref(), limit, options?)
                .await
        };
        settle(pairs.await, |pairs| {
            pairs
                .into_iter()
                .map(|(key, record)| NativeEntry {
                    key,
                    value: record.value.to_vec().into(),
                })
                .collect()
        })
    }

    /// The value at `key` with its revisions.
    #[napi]
    pub async fn get_entry(
        &self,
        key: String,
        consistency: String,
        timeout_ms: u32,
    ) -> Either<Option<NativeKeyRecord>, NativeFailure> {
        let options = read_options(&consistency, timeout_ms);
        let found = async { self.handle()?.get_entry(&key, options?).await }.await;
        settle(found, |found| {
            found.map(|(record, session)| NativeKeyRecord::new(&record, session))
        })
    }
}
