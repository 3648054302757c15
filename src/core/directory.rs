//! The member directory: who the members are (names by raft id, voters and learners, every
//! member's id), where they listen, and whether this node is one of them. Refreshed from the
//! configuration after every change, snapshot and start; the epoch of the last change that
//! took effect is replicated state, so every member skips a stale change alike.

use std::collections::HashMap;
use std::sync::Arc;

use raft::eraftpb::ConfState;
use raft::INVALID_ID;

use crate::config::Config;
use crate::ids::raft_id;

use super::*;

/// See the module docs.
pub(super) struct Directory {
    own: u64,
    names: HashMap<u64, String>,
    /// Member URLs known here (configuration, snapshots, membership changes).
    urls: HashMap<u64, String>,
    /// URLs learnt since the transport last took them.
    updates: Vec<(String, String)>,
    /// Voters and learners by name, sorted.
    named: (Arc<[String]>, Arc<[String]>),
    /// Raft ids of every member (voters, learners, either side of a joint configuration),
    /// and how often they were refreshed.
    ids: Vec<u64>,
    version: u64,
    /// This node was a member of the configuration at some point (a joining node is not,
    /// until it is added).
    was_member: bool,
    /// This node has been removed from the configuration.
    removed: bool,
    /// Index of the last membership change that took effect (replicated state: every
    /// member computes the same value, and snapshots carry it). A change carries the epoch
    /// it was proposed in and is skipped if another took effect first, so a change
    /// proposed twice (retried after a drop) never applies twice.
    pub(super) conf_epoch: u64,
}

impl Directory {
    /// The members `config` names, before any configuration is known.
    pub(super) fn new(config: &Config, conf_epoch: u64) -> Self {
        let own = raft_id(&config.name);
        let mut names: HashMap<u64, String> = config
            .peers
            .keys()
            .map(|name| (raft_id(name), name.clone()))
            .collect();
        names.insert(own, config.name.clone());
        let urls = config
            .peers
            .iter()
            .filter(|(_, url)| !url.is_empty())
            .map(|(name, url)| (raft_id(name), url.clone()))
            .collect();
        Directory {
            own,
            names,
            urls,
            updates: Vec::new(),
            named: (Arc::from([]), Arc::from([])),
            ids: Vec::new(),
            version: 0,
            was_member: false,
            removed: false,
            conf_epoch,
        }
    }

    /// Records members' names and URLs (from a snapshot or a membership change); new URLs
    /// are passed on to the transport. A URL this node was configured with wins.
    pub(super) fn learn(&mut self, members: Vec<(String, String)>) {
        for (name, url) in members {
            let id = raft_id(&name);
            if id == self.own {
                continue;
            }
            self.names.insert(id, name.clone());
            if !url.is_empty() && !self.urls.contains_key(&id) {
                self.urls.insert(id, url.clone());
                self.updates.push((name, url));
            }
        }
    }

    /// The URL at which this node listens (known once it is bound).
    pub(super) fn set_own_url(&mut self, url: &str) {
        self.urls.insert(self.own, url.to_string());
    }

    /// Peer URLs learnt since the last call, for the transport.
    pub(super) fn take_updates(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.updates)
    }

    /// The URL of a raft id, if known.
    pub(super) fn url(&self, id: u64) -> Option<&String> {
        self.urls.get(&id)
    }

    /// The name of a raft id, as far as this node knows it.
    pub(super) fn name_of(&self, id: u64) -> Option<String> {
        (id != INVALID_ID).then(|| {
            self.names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("#{id}"))
        })
    }

    /// Voters and learners by name, sorted.
    pub(super) fn named(&self) -> (Arc<[String]>, Arc<[String]>) {
        self.named.clone()
    }

    /// Members' names and URLs, for a snapshot.
    pub(super) fn urls_of_members(&self) -> Vec<(String, String)> {
        let (voters, learners) = &self.named;
        voters
            .iter()
            .chain(learners.iter())
            .map(|name| {
                let url = self.urls.get(&raft_id(name)).cloned().unwrap_or_default();
                (name.clone(), url)
            })
            .collect()
    }

    /// Raft ids of every member, and a counter that changes whenever they may have.
    pub(super) fn ids(&self) -> (u64, &[u64]) {
        (self.version, &self.ids)
    }

    /// Refreshes the directory from the configuration `cs`. Returns true when this node,
    /// a member before, is not one in `cs`: its removal is for the caller to carry out
    /// ([`Directory::mark_removed`]). Its return, were its name added again, is noted here.
    pub(super) fn refresh(&mut self, cs: &ConfState) -> bool {
        let mut ids: Vec<u64> = [
            &cs.voters,
            &cs.voters_outgoing,
            &cs.learners,
            &cs.learners_next,
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect();
        ids.sort_unstable();
        ids.dedup();
        let names = |ids: &mut dyn Iterator<Item = &u64>| -> Arc<[String]> {
            let mut names: Vec<String> = ids.filter_map(|&id| self.name_of(id)).collect();
            names.sort();
            names.dedup();
            names.into()
        };
        let voters = names(&mut cs.voters.iter().chain(cs.voters_outgoing.iter()));
        let learners = names(&mut cs.learners.iter());
        self.named = (voters, learners);
        self.ids = ids;
        self.version += 1;
        let member = [&cs.voters, &cs.learners, &cs.learners_next]
            .iter()
            .any(|ids| ids.contains(&self.own));
        if member {
            self.was_member = true;
            self.removed = false;
        }
        !member && self.was_member && !self.removed
    }

    /// Notes this node's removal. Returns false if it was noted already.
    pub(super) fn mark_removed(&mut self) -> bool {
        !std::mem::replace(&mut self.removed, true)
    }

    /// This node has been removed from the configuration.
    pub(super) fn removed(&self) -> bool {
        self.removed
    }

    /// This node was a member at some point.
    pub(super) fn was_member(&self) -> bool {
        self.was_member
    }
}

impl<S: LogStore> Core<S> {
    /// Refreshes the directory and member health from the current configuration, and
    /// notices this node's removal.
    pub(super) fn refresh_members(&mut self) {
        let cs = self.conf_state();
        let removed = self.directory.refresh(&cs);
        let ids = self.directory.ids().1.to_vec();
        self.health.retain(|id| ids.contains(&id));
        self.evaluate_health();
        if removed {
            self.mark_removed();
        }
    }

    /// This node is no longer a member: it answers what waits and refuses what comes. A
    /// removed node goes on taking part in raft: while the joint configuration lasts, its
    /// vote may be needed.
    pub(super) fn mark_removed(&mut self) {
        if !self.directory.mark_removed() {
            return;
        }
        tracing::info!("removed from the cluster");
        self.writes.removed();
        self.changes.fail_all(&Error::Removed);
        self.reads.fail_all(&Error::Removed);
    }

    /// The URL at which this node listens (known once it is bound), for the members table
    /// and snapshots.
    pub fn set_own_url(&mut self, url: &str) {
        self.directory.set_own_url(url);
        self.evaluate_health();
    }

    /// Peer URLs learnt since the last call, for the transport.
    pub fn take_peer_updates(&mut self) -> Vec<(String, String)> {
        self.directory.take_updates()
    }

    /// Raft ids of every member, and a counter that changes whenever they may have.
    pub fn member_ids(&self) -> (u64, &[u64]) {
        self.directory.ids()
    }

    /// The name of a raft id, as far as this node knows it.
    pub fn name_of(&self, id: u64) -> Option<String> {
        self.directory.name_of(id)
    }

    pub(super) fn conf_state(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }
}
