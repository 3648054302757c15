//! Members and leadership: the members table, membership changes, leadership transfer.

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use super::convert::NativeMember;
use super::errors::{settle, thrown, NativeFailure, Thrown};
use super::{ms, NativeRaftNode};
use crate::MembershipChange;

impl NativeRaftNode {
    /// Makes a membership change; resolves with the index of its entry.
    async fn change(
        &self,
        change: MembershipChange,
        timeout_ms: u32,
    ) -> Either<f64, NativeFailure> {
        let timeout = ms(timeout_ms);
        let index = async { self.handle()?.change_membership(change, timeout).await }.await;
        settle(index, |index| index as f64)
    }
}

#[napi]
impl NativeRaftNode {
    /// Members as this node sees them (health is known on the leader).
    #[napi]
    pub fn members(&self) -> std::result::Result<Vec<NativeMember>, Thrown> {
        let handle = self.handle().map_err(thrown)?;
        Ok(handle
            .members()
            .into_iter()
            .map(|m| {
                let http_url = handle.http_url_of(&m.name);
                NativeMember {
                    http_url,
                    ..m.into()
                }
            })
            .collect())
    }

    /// Adds a member (started with `join`) at `url`, as a learner or a voter.
    #[napi]
    pub async fn add_member(
        &self,
        id: String,
        url: String,
        learner: bool,
        timeout_ms: u32,
    ) -> Either<f64, NativeFailure> {
        let change = MembershipChange::Add {
            name: id,
            url,
            learner,
        };
        self.change(change, timeout_ms).await
    }

    /// Makes a learner a voter.
    #[napi]
    pub async fn promote_member(&self, id: String, timeout_ms: u32) -> Either<f64, NativeFailure> {
        self.change(MembershipChange::Promote { name: id }, timeout_ms)
            .await
    }

    /// Removes a member.
    #[napi]
    pub async fn remove_member(&self, id: String, timeout_ms: u32) -> Either<f64, NativeFailure> {
        self.change(MembershipChange::Remove { name: id }, timeout_ms)
            .await
    }

    /// Hands leadership to `to` (or the best voter); resolves with the new leader.
    #[napi]
    pub async fn transfer_leadership(
        &self,
        to: Option<String>,
        timeout_ms: u32,
    ) -> Either<String, NativeFailure> {
        let timeout = ms(timeout_ms);
        let leader = async {
            let handle = self.handle()?;
            handle.transfer_leadership(to.as_deref(), timeout).await
        }
        .await;
        settle(leader, |leader| leader)
    }
}
