//! Recovery from a lost quorum: one survivor restarts as the only member of a new cluster,
//! keeping its data (etcd's `--force-new-cluster`).
//!
//! The survivor's log is rewritten before the node starts:
//! 1. every entry it holds is kept, committed or not. The commit index it recorded may lag
//!    what was committed (a leader records its own commits lazily) and an acknowledged
//!    write it holds must not be lost; an entry that never committed takes effect as a
//!    timed-out write may;
//! 2. membership changes are appended after its last entry and marked committed: leave a
//!    half-done (joint) change, make this member a voter, then remove every other member;
//! 3. raft applies them on start as it applies any committed entry, so the configuration is
//!    this member alone, which elects itself. Others are then added back with `addMember`
//!    (each started with `join` and an empty data directory).
//!
//! Running it on a directory that already is a one-member cluster of this member writes
//! nothing: an option left on by mistake does no harm on the next start. The entries have no
//! epoch (see [`MemberInfo`]), so they apply whatever the epoch.

use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState};

use super::replay::{state_at, Upto};
use crate::error::Result;
use crate::ids::raft_id;
use crate::membership::MemberInfo;
use crate::storage::LogStore;

/// What [`force_new_cluster`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Members removed from the configuration.
    pub removed: Vec<String>,
    /// Entries past the commit index the survivor had recorded, kept as committed.
    pub uncommitted: u64,
    /// The commit index the new cluster starts from (after the appended changes).
    pub commit: u64,
}

/// Rewrites `store`, the log of member `name`, so that it starts as a one-member cluster;
/// `None` when it is one already (nothing is written).
pub fn force_new_cluster<S: LogStore>(store: &mut S, name: &str) -> Result<Option<Recovered>> {
    let state = state_at(store, Upto::Last)?;
    let me = raft_id(name);
    let cs = &state.conf_state;
    let joint = !cs.voters_outgoing.is_empty();
    let others: Vec<u64> = {
        let (voters, learners) = state.member_ids();
        let mut ids: Vec<u64> = voters
            .into_iter()
            .chain(learners)
            .filter(|&id| id != me)
            .collect();
        ids.sort_unstable();
        ids
    };
    let voter = cs.voters.contains(&me) && !joint;
    if others.is_empty() && voter {
        return Ok(None);
    }
    let name_of = |id: u64| state.name_of(id).0;
    let single = |kind: ConfChangeType, id: u64, name: String| ConfChangeV2 {
        changes: vec![ConfChangeSingle {
            change_type: kind as i32,
            node_id: id,
        }],
        context: MemberInfo {
            name,
            url: String::new(),
            epoch: None,
        }
        .encode(),
        ..Default::default()
    };
    let mut changes = Vec::new();
    if joint {
        // An empty change leaves the joint configuration.
        changes.push(ConfChangeV2::default());
    }
    changes.push(single(ConfChangeType::AddNode, me, name.to_string()));
    changes.extend(
        others
            .iter()
            .map(|&id| single(ConfChangeType::RemoveNode, id, name_of(id))),
    );
    // A term of its own: nothing the old cluster did in a term can be confused with the new
    // cluster's entries.
    let term = state.hard_state.term.max(state.applied_term) + 1;
    let entries: Vec<Entry> = changes
        .iter()
        .enumerate()
        .map(|(i, change)| Entry {
            entry_type: EntryType::EntryConfChangeV2 as i32,
            term,
            index: state.applied + 1 + i as u64,
            data: change.encode_to_vec(),
            ..Default::default()
        })
        .collect();
    let commit = state.applied + entries.len() as u64;
    let hard_state = HardState {
        term,
        vote: 0,
        commit,
    };
    store.persist(None, &entries, Some(&hard_state))?;
    Ok(Some(Recovered {
        removed: others.iter().map(|&id| name_of(id)).collect(),
        uncommitted: state.last_index.saturating_sub(state.hard_state.commit),
        commit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::replay::{state_at, Upto};
    use crate::state_machine::Command;
    use crate::storage::{bootstrap_log, mem_storage};
    use raft::eraftpb::EntryType;

    fn set(index: u64, key: &str) -> Entry {
        Entry {
            entry_type: EntryType::EntryNormal as i32,
            term: 2,
            index,
            data: Command::Set {
                key: key.into(),
                value: serde_bytes::ByteBuf::from(b"v".to_vec()),
            }
            .encode(),
            ..Default::default()
        }
    }

    #[test]
    fn a_survivor_keeps_every_entry_it_holds_even_past_the_commit_index_it_recorded() {
        // Three members' bootstrap log (committed at 3), then three writes this member holds
        // whose commit it never recorded (a leader's own commits stay in memory).
        let members: Vec<(String, String)> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), String::new()))
            .collect();
        let mut store = mem_storage(Some(bootstrap_log(&members)));
        let hard_state = HardState {
            term: 2,
            vote: raft_id("n1"),
            commit: 3,
        };
        let writes = [set(4, "a"), set(5, "b"), set(6, "c")];
        store.persist(None, &writes, Some(&hard_state)).unwrap();

        let done = force_new_cluster(&mut store, "n1")
            .unwrap()
            .expect("rewritten");
        assert_eq!(done.uncommitted, 3);
        // After the writes: this member made a voter, then the two others removed.
        assert_eq!(done.commit, 9);
        let mut removed = done.removed.clone();
        removed.sort();
        assert_eq!(removed, ["n2", "n3"]);

        let state = state_at(&store, Upto::Commit).unwrap();
        assert_eq!(state.hard_state.term, 3, "a term of its own");
        assert_eq!(state.conf_state.voters, [raft_id("n1")]);
        for key in ["a", "b", "c"] {
            assert_eq!(state.kv.get(key), Some(&b"v"[..]), "{key} kept");
        }
        // A second run finds a one-member cluster and writes nothing.
        assert_eq!(force_new_cluster(&mut store, "n1").unwrap(), None);
    }
}
