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

/// The conf change an entry carries, as a `ConfChangeV2` (a V1 change is one single change).
pub fn decode_conf_change(
    entry: &raft::eraftpb::Entry,
) -> std::result::Result<raft::eraftpb::ConfChangeV2, String> {
    use prost::Message as _;
    use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeV2, EntryType};
    let data = entry.data.as_slice();
    if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
        return ConfChangeV2::decode(data).map_err(|e| e.to_string());
    }
    ConfChange::decode(data)
        .map(|cc| ConfChangeV2 {
            changes: vec![ConfChangeSingle {
                change_type: cc.change_type,
                node_id: cc.node_id,
            }],
            context: cc.context,
            ..Default::default()
        })
        .map_err(|e| e.to_string())
}
