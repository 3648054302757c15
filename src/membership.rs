//! Membership changes: what a caller asks for, and what travels in the conf change.

use serde::{Deserialize, Serialize};

/// A change to the cluster's members, made through the leader, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adds a member (started with `join`) that listens at `url`, as a voter or a learner.
    Add {
        name: String,
        url: String,
        learner: bool,
    },
    /// Makes a learner a voter.
    Promote { name: String },
    /// Removes a member.
    Remove { name: String },
}

/// What a conf change carries besides the raft id: the member's name and URL, so that
/// every node (and every node restored from the log later) can reach it, and the epoch
/// (index of the last change that took effect) it was proposed in: a change whose epoch
/// is no longer current is skipped by every member, so a resent change applies once.
/// Changes without an epoch (the bootstrap log's) always apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub epoch: Option<u64>,
}

impl MemberInfo {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("member info always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Option<MemberInfo> {
        rmp_serde::from_slice(bytes).ok()
    }
}
