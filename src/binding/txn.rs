//! Transactions: comparisons and two branches from JS, one entry, and each operation's result
//! back (see `state_machine::txn`).

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::errors::{settle, NativeFailure};
use super::kv::NativeKeyRecord;
use super::{NativeRaftNode, NativeWriteOptions};
use crate::state_machine::txn::{Compare, Txn, TxnOp, TxnOpResult};
use crate::{Command, Error as EngineError};

/// One comparison: `kind` is `"exists"` (with `exists`), `"value"` (with `value`),
/// `"modIndex"` or `"version"` (with `number`).
#[napi(object)]
pub struct NativeCompare {
    pub key: String,
    pub kind: String,
    pub exists: Option<bool>,
    pub value: Option<Buffer>,
    pub number: Option<f64>,
}

/// One operation: `op` is `"set"` (with `value`, and `session` for an ephemeral key),
/// `"delete"` or `"get"`.
#[napi(object)]
pub struct NativeTxnOp {
    pub op: String,
    pub key: String,
    pub value: Option<Buffer>,
    pub session: Option<f64>,
}

/// A transaction as JS checked it.
#[napi(object)]
pub struct NativeTxn {
    pub compares: Vec<NativeCompare>,
    pub then: Vec<NativeTxnOp>,
    pub otherwise: Vec<NativeTxnOp>,
}

/// What one operation did: a write says whether its key `existed`; a get carries the `entry`
/// (none: absent).
#[napi(object)]
pub struct NativeTxnOpResult {
    pub existed: Option<bool>,
    pub entry: Option<NativeKeyRecord>,
}

/// A transaction's result.
#[napi(object)]
pub struct NativeTxnResult {
    pub index: f64,
    pub term: f64,
    pub succeeded: bool,
    pub results: Vec<NativeTxnOpResult>,
    /// A retry's: the first transaction's result, and nothing applied now.
    pub duplicate: bool,
}

fn invalid(message: String) -> EngineError {
    EngineError::Invalid(message)
}

/// A whole number of the log (0 and up, at most 2^53).
fn index(what: &str, n: Option<f64>) -> crate::Result<u64> {
    match n {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_992.0 => Ok(n as u64),
        other => Err(invalid(format!(
            "{what} must be a whole number >= 0, got {other:?}"
        ))),
    }
}

fn compare(c: NativeCompare) -> crate::Result<Compare> {
    let NativeCompare {
        key,
        kind,
        exists,
        value,
        number,
    } = c;
    Ok(match (kind.as_str(), exists, value) {
        ("exists", Some(exists), _) => Compare::Exists { key, exists },
        ("value", _, Some(value)) => Compare::Value {
            key,
            value: value.to_vec().into(),
        },
        ("modIndex", ..) => Compare::ModIndex {
            index: index("modIndex", number)?,
            key,
        },
        ("version", ..) => Compare::Version {
            version: index("version", number)?,
            key,
        },
        (other, ..) => return Err(invalid(format!("unknown comparison {other:?}"))),
    })
}

fn operation(op: NativeTxnOp) -> crate::Result<TxnOp> {
    let NativeTxnOp {
        op,
        key,
        value,
        session,
    } = op;
    Ok(match (op.as_str(), value, session) {
        ("set", Some(value), None) => TxnOp::Set {
            key,
            value: value.to_vec().into(),
        },
        ("set", Some(value), Some(session)) => TxnOp::SetEphemeral {
            key,
            value: value.to_vec().into(),
            session: index("session", Some(session))?,
        },
        ("delete", ..) => TxnOp::Delete { key },
        ("get", ..) => TxnOp::Get { key },
        (other, ..) => return Err(invalid(format!("unknown operation {other:?}"))),
    })
}

fn read(txn: NativeTxn) -> crate::Result<Txn> {
    let ops = |ops: Vec<NativeTxnOp>| {
        ops.into_iter()
            .map(operation)
            .collect::<crate::Result<Vec<_>>>()
    };
    Ok(Txn {
        compares: txn
            .compares
            .into_iter()
            .map(compare)
            .collect::<crate::Result<_>>()?,
        then: ops(txn.then)?,
        otherwise: ops(txn.otherwise)?,
    })
}

#[napi]
impl NativeRaftNode {
    /// Applies a transaction in one entry; resolves with the branch taken and its results.
    #[napi]
    pub async fn txn(
        &self,
        txn: NativeTxn,
        opts: NativeWriteOptions,
    ) -> Either<NativeTxnResult, NativeFailure> {
        let written = async {
            let (command, options) = opts.write(Command::Txn(read(txn)?));
            self.handle()?.write(command, options).await
        };
        settle(written.await, |outcome| {
            let txn = outcome
                .txn
                .unwrap_or_else(|| crate::state_machine::txn::TxnOutcome {
                    succeeded: outcome.ok,
                    results: Vec::new(),
                });
            let results = txn
                .results
                .iter()
                .map(|r| match r {
                    TxnOpResult::Written { existed } => NativeTxnOpResult {
                        existed: Some(*existed),
                        entry: None,
                    },
                    TxnOpResult::Read(record) => NativeTxnOpResult {
                        existed: None,
                        entry: record.as_ref().map(|r| NativeKeyRecord::new(r, None)),
                    },
                })
                .collect();
            NativeTxnResult {
                index: outcome.index as f64,
                term: outcome.term as f64,
                succeeded: txn.succeeded,
                results,
                duplicate: outcome.duplicate,
            }
        })
    }
}
