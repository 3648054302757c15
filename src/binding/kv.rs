//! The key-value methods: writes (each replicated, answered once applied here) and reads.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::convert::NativeWriteResult;
use super::errors::{settle, thrown, NativeFailure, Thrown};
use super::{ms, NativeRaftNode};
use crate::{BatchOp, Command, Consistency, Error as EngineError, ReadOptions, WriteOptions};

/// One operation of a batch.
#[napi(object)]
pub struct NativeBatchOp {
    /// `"set"` or `"delete"`.
    pub op: String,
    pub key: String,
    pub value: Option<Buffer>,
}

/// One key-value pair.
#[napi(object)]
pub struct NativeEntry {
    pub key: String,
    pub value: Buffer,
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
    /// Replicates `command`; the result once it is applied on this node. Only `cas` and
    /// `incr` hand JS the value (the one after them): the previous value `set` and `delete`
    /// have would cost a buffer per write that JS throws away.
    async fn write(
        &self,
        command: Command,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let options = WriteOptions {
            timeout: ms(timeout_ms),
            forward,
        };
        let with_value = matches!(command, Command::Cas { .. } | Command::Incr { .. });
        let outcome = async { self.handle()?.write(command, options).await }.await;
        settle(outcome, |mut outcome| {
            if !with_value {
                outcome.value = None;
            }
            NativeWriteResult::from(outcome)
        })
    }
}

#[napi]
impl NativeRaftNode {
    #[napi]
    pub async fn set(
        &self,
        key: String,
        value: Buffer,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let value = value.to_vec().into();
        self.write(Command::Set { key, value }, timeout_ms, forward)
            .await
    }

    #[napi]
    pub async fn delete(
        &self,
        key: String,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        self.write(Command::Delete { key }, timeout_ms, forward)
            .await
    }

    /// Compare-and-set; `expected: null` means "absent", `next: null` deletes.
    #[napi]
    pub async fn cas(
        &self,
        key: String,
        expected: Option<Buffer>,
        next: Option<Buffer>,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let expected = expected.map(|b| b.to_vec().into());
        let next = next.map(|b| b.to_vec().into());
        let command = Command::Cas {
            key,
            expected,
            next,
        };
        self.write(command, timeout_ms, forward).await
    }

    /// Atomic numeric add; `ok: false` when the value is not a number.
    #[napi]
    pub async fn incr(
        &self,
        key: String,
        by: f64,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        self.write(Command::Incr { key, by }, timeout_ms, forward)
            .await
    }

    #[napi]
    pub async fn batch(
        &self,
        ops: Vec<NativeBatchOp>,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        let ops = ops
            .into_iter()
            .map(|op| match (op.op.as_str(), op.value) {
                ("set", Some(value)) => Ok(BatchOp::Set {
                    key: op.key,
                    value: value.to_vec().into(),
                }),
                ("delete", _) => Ok(BatchOp::Delete { key: op.key }),
                (other, _) => Err(EngineError::Invalid(format!("invalid batch op {other:?}"))),
            })
            .collect::<crate::Result<Vec<_>>>();
        match ops {
            Ok(ops) => {
                self.write(Command::Batch { ops }, timeout_ms, forward)
                    .await
            }
            Err(error) => Either::B(error.into()),
        }
    }

    #[napi]
    pub async fn propose(
        &self,
        data: Buffer,
        timeout_ms: u32,
        forward: bool,
    ) -> Either<NativeWriteResult, NativeFailure> {
        self.write(Command::Raw(data.to_vec().into()), timeout_ms, forward)
            .await
    }

    /// The value at `key` under `consistency` (`linearizable`, `lease` or `local`).
    #[napi]
    pub async fn get(
        &self,
        key: String,
        consistency: String,
        timeout_ms: u32,
    ) -> Either<Option<Buffer>, NativeFailure> {
        let options = read_options(&consistency, timeout_ms);
        let value = async { self.handle()?.get(&key, options?).await }.await;
        settle(value, |v| v.map(Buffer::from))
    }

    /// Synchronous read of this node's applied state.
    #[napi]
    pub fn get_local(&self, key: String) -> std::result::Result<Option<Buffer>, Thrown> {
        let handle = self.handle().map_err(thrown)?;
        Ok(handle.get_local(&key).map(Buffer::from))
    }

    /// Pairs under `prefix`, sorted by key.
    #[napi]
    pub async fn entries(
        &self,
        prefix: String,
        consistency: String,
        timeout_ms: u32,
    ) -> Either<Vec<NativeEntry>, NativeFailure> {
        let options = read_options(&consistency, timeout_ms);
        let pairs = async { self.handle()?.entries(&prefix, options?).await }.await;
        settle(pairs, |pairs| {
            pairs
                .into_iter()
                .map(|(key, value)| NativeEntry {
                    key,
                    value: value.into(),
                })
                .collect()
        })
    }
}
