//! Sessions and locks: open, close, lock, unlock. (Grants and lost sessions arrive as
//! events: see `events.rs`.)

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use super::errors::{settle, NativeFailure};
use super::{ms, write_options, NativeRaftNode};
use crate::state_machine::locks::LockReply;

/// The answer to a lock request.
#[napi(object)]
pub struct NativeLockReply {
    /// `"granted"`, `"queued"` or `"busy"`.
    pub state: String,
    /// For `"granted"`: the fence (the index of the granting entry).
    pub fence: Option<f64>,
}

#[napi]
impl NativeRaftNode {
    /// Opens a session this node keeps alive; resolves with its id.
    #[napi]
    pub async fn open_session(&self, ttl_ms: u32, timeout_ms: u32) -> Either<f64, NativeFailure> {
        let opened = async {
            let handle = self.handle()?;
            handle
                .open_session(ms(ttl_ms), write_options(timeout_ms, true))
                .await
        }
        .await;
        settle(opened, |id| id as f64)
    }

    /// Ends session `id` now; resolves with whether it still existed.
    #[napi]
    pub async fn close_session(&self, id: f64, timeout_ms: u32) -> Either<bool, NativeFailure> {
        let closed = async {
            let handle = self.handle()?;
            handle
                .close_session(id as u64, write_options(timeout_ms, true))
                .await
        }
        .await;
        settle(closed, |existed| existed)
    }

    /// How many ms longer session `id`, kept by this node, may be counted on; `null` once it
    /// is not. (Read without the driver: the holder's timer relies on it.)
    #[napi]
    pub fn session_valid_for(&self, id: f64) -> Option<f64> {
        let handle = self.handle().ok()?;
        let left = handle.session_valid_for(id as u64)?;
        Some(left.as_secs_f64() * 1000.0)
    }

    /// Session `session` asks for lock `name` (queueing with `wait`).
    #[napi]
    pub async fn lock(
        &self,
        name: String,
        session: f64,
        wait: bool,
        timeout_ms: u32,
    ) -> Either<NativeLockReply, NativeFailure> {
        let reply = async {
            let handle = self.handle()?;
            let options = write_options(timeout_ms, true);
            handle.lock(&name, session as u64, wait, options).await
        }
        .await;
        settle(reply, |reply| {
            let (state, fence) = match reply {
                LockReply::Granted { fence } => ("granted", Some(fence as f64)),
                LockReply::Queued => ("queued", None),
                _ => ("busy", None),
            };
            NativeLockReply {
                state: state.to_string(),
                fence,
            }
        })
    }

    /// Session `session` releases lock `name` or leaves its queue; resolves with whether it
    /// held or waited.
    #[napi]
    pub async fn unlock(
        &self,
        name: String,
        session: f64,
        timeout_ms: u32,
    ) -> Either<bool, NativeFailure> {
        let released = async {
            let handle = self.handle()?;
            let options = write_options(timeout_ms, true);
            handle.unlock(&name, session as u64, options).await
        }
        .await;
        settle(released, |released| released)
    }
}
