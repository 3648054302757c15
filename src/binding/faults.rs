//! Test hooks: faults injected into a running node (`raftline/testing`).

use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use super::errors::{settle, thrown, NativeFailure, Thrown};
use super::NativeRaftNode;
use crate::runtime::driver::InjectedFault;
use crate::Error as EngineError;

#[napi]
impl NativeRaftNode {
    /// Drops all traffic to and from `peer` (fault injection).
    #[napi]
    pub fn block_peer(&self, peer: String) -> std::result::Result<(), Thrown> {
        self.handle().map_err(thrown)?.faults().block(&peer);
        Ok(())
    }

    /// Lets all traffic through again.
    #[napi]
    pub fn clear_faults(&self) -> std::result::Result<(), Thrown> {
        self.handle().map_err(thrown)?.faults().clear();
        Ok(())
    }

    /// Blocks the driver for `ms`, as a disk stalled in fsync would (tests).
    #[napi]
    pub async fn stall_driver(&self, ms: u32) -> Either<(), NativeFailure> {
        let stall = Duration::from_millis(u64::from(ms));
        let stalled = async { self.handle()?.stall_driver(stall).await }.await;
        settle(stalled, |()| ())
    }

    /// Fails the driver: `storage` (a write fails) or `panic` (an engine bug) (tests).
    #[napi]
    pub async fn inject_fault(&self, kind: String) -> Either<(), NativeFailure> {
        let fault = match kind.as_str() {
            "storage" => Ok(InjectedFault::Storage),
            "panic" => Ok(InjectedFault::Panic),
            other => Err(EngineError::Invalid(format!("unknown fault {other:?}"))),
        };
        let injected = async { self.handle()?.inject_fault(fault?).await }.await;
        settle(injected, |()| ())
    }
}
