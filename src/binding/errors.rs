//! Engine errors as JS receives them, with their `ERR_*` code (docs/API.md) as a property,
//! never inside the message.
//!
//! A synchronous method throws a JS error whose `code` is the engine's. An async method
//! cannot: a future's rejection carries only napi's own status names. So an async method
//! resolves with a [`NativeFailure`] instead, which the JS layer throws as a `RaftError`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::Error as EngineError;

/// An `ERR_*` code, as the `code` of a thrown JS error.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What a synchronous method throws.
pub type Thrown = napi::Error<Code>;

/// The JS error for an engine error: `err.code` is its `ERR_*` code.
pub fn thrown(error: EngineError) -> Thrown {
    napi::Error::new(Code(error.code()), error.to_string())
}

/// How an async method failed.
#[napi]
pub struct NativeFailure {
    /// The `ERR_*` code.
    pub code: String,
    pub message: String,
    /// `ERR_NOT_LEADER`: the leader, if known.
    pub leader_id: Option<String>,
}

impl From<EngineError> for NativeFailure {
    fn from(error: EngineError) -> Self {
        let leader_id = match &error {
            EngineError::NotLeader { leader } => leader.clone(),
            _ => None,
        };
        NativeFailure {
            code: error.code().to_string(),
            message: error.to_string(),
            leader_id,
        }
    }
}

/// What an async method resolves with, from an engine result: its value converted with
/// `f`, or how it failed. (Each method spells out `Either<T, NativeFailure>`, so that the
/// generated types say `T | NativeFailure`.)
pub fn settle<T, U>(result: crate::Result<T>, f: impl FnOnce(T) -> U) -> Either<U, NativeFailure> {
    match result {
        Ok(value) => Either::A(f(value)),
        Err(error) => Either::B(error.into()),
    }
}
