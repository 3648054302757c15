//! The nemesis of a verification run: while clients write, it partitions, isolates the
//! leader, kills and restarts members (writes in flight, durable storage), transfers
//! leadership, and changes membership (adds a learner, promotes it, removes the leader).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftline::{MembershipChange, NodeHandle, Role};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use crate::common::{Cluster, DEADLINE};

/// Faults injected, by kind.
pub type Faults = BTreeMap<&'static str, u32>;

/// Where membership changes stand in a run.
enum Growth {
    /// Nothing changed yet.
    Initial,
    /// `name` runs, waiting to be added as a learner.
    Joining(String),
    /// `name` runs and was added as a learner.
    Learner(String),
    /// The learner was promoted; the next step removes the leader.
    Promoted,
    /// The leader was removed: no more changes in this run.
    Done,
}

/// Drives one cluster through faults until `until`, publishing the live members' handles
/// to `nodes` after every change. Ends healed, with every member running.
pub struct Nemesis {
    pub cluster: Cluster,
    pub nodes: Arc<Mutex<Vec<NodeHandle>>>,
    pub faults: Faults,
    rng: StdRng,
    tune: super::Tune,
    growth: Growth,
    joined: u32,
}

impl Nemesis {
    pub fn new(cluster: Cluster, tune: super::Tune, seed: u64) -> Nemesis {
        let nemesis = Nemesis {
            nodes: Arc::new(Mutex::new(Vec::new())),
            cluster,
            faults: Faults::new(),
            rng: StdRng::seed_from_u64(seed),
            tune,
            growth: Growth::Initial,
            joined: 0,
        };
        nemesis.publish();
        nemesis
    }

    fn publish(&self) {
        let live: Vec<NodeHandle> = self.cluster.live().into_iter().cloned().collect();
        *self.nodes.lock().unwrap() = live;
    }

    fn count(&mut self, fault: &'static str) {
        *self.faults.entry(fault).or_default() += 1;
    }

    /// A pause between faults (workload pacing, not synchronization).
    async fn pause(&mut self, from_ms: u64, to_ms: u64) {
        let ms = self.rng.gen_range(from_ms..to_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Injects faults until `until`, then heals and restarts everything.
    pub async fn run(&mut self, until: Instant) {
        // A quiet start: the clients' first operations make a fault-free history prefix.
        self.pause(300, 301).await;
        while Instant::now() < until {
            match self.rng.gen_range(0..7) {
                0 => self.partition().await,
                1 => self.isolate_leader().await,
                2 => self.kill_and_restart().await,
                3 => self.transfer().await,
                4 => self.stall().await,
                _ => self.change_membership().await,
            }
            self.pause(50, 250).await;
        }
        self.cluster.heal();
        // A joiner that was never added is not a member: it leaves.
        if let Growth::Joining(name) = &self.growth {
            let name = name.clone();
            self.cluster.kill(&name).await;
            self.cluster.names.retain(|n| *n != name);
            self.publish();
        }
    }

    async fn partition(&mut self) {
        let mut names = self.running();
        names.shuffle(&mut self.rng);
        let cut = self.rng.gen_range(1..names.len().max(2));
        let (a, b) = names.split_at(cut.min(names.len()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        self.cluster.partition(&a, &b);
        self.count("partition");
        self.pause(100, 600).await;
        self.cluster.heal();
    }

    async fn isolate_leader(&mut self) {
        let Some(leader) = self.leader() else { return };
        let others: Vec<String> = self
            .running()
            .into_iter()
            .filter(|n| *n != leader)
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        self.cluster.partition(&[leader.as_str()], &others);
        self.count("isolate leader");
        self.pause(100, 600).await;
        self.cluster.heal();
    }

    async fn kill_and_restart(&mut self) {
        let names = self.running();
        // Keep a majority of the configuration running.
        if names.len() < 3 {
            return;
        }
        let victim = names.choose(&mut self.rng).unwrap().clone();
        self.cluster.kill(&victim).await;
        self.publish();
        self.count("kill + restart");
        self.pause(50, 400).await;
        self.cluster.launch(&victim).await.expect("restarts");
        self.publish();
    }

    async fn transfer(&mut self) {
        let Some(leader) = self.leader() else { return };
        let voters = self.cluster.node(&leader).status().voters;
        let Some(to) = voters
            .iter()
            .filter(|v| **v != leader)
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .map(|v| v.to_string())
        else {
            return;
        };
        let _ = self
            .cluster
            .node(&leader)
            .transfer_leadership(Some(&to), Duration::from_secs(1))
            .await;
        self.count("transfer leadership");
    }

    /// Pauses a node's engine (the leader half the time), as a disk hanging an fsync or a
    /// process paused would: longer than a lock client's session TTL, often.
    async fn stall(&mut self) {
        let name = match self.leader() {
            Some(leader) if self.rng.gen_bool(0.5) => leader,
            _ => {
                let names = self.running();
                let Some(name) = names.choose(&mut self.rng) else {
                    return;
                };
                name.clone()
            }
        };
        let pause = Duration::from_millis(self.rng.gen_range(150..600));
        let _ = self.cluster.node(&name).stall_driver(pause).await;
        self.count("stall");
        self.pause(100, 400).await;
    }

    async fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let handle = self.cluster.node(&leader).clone();
        // Faults may make a change fail (its outcome then unknown): the step is tried again
        // later, and a change that had taken effect after all is recognised as done.
        let done = |result: raftline::Result<u64>, already: &str| match result {
            Ok(_) => true,
            Err(e) if e.to_string().contains(already) => true,
            Err(e) => {
                assert!(
                    [
                        "ERR_TIMEOUT",
                        "ERR_CONF_CHANGE_IN_PROGRESS",
                        "ERR_INVALID",
                        "ERR_NO_LEADER"
                    ]
                    .contains(&e.code()),
                    "membership change failed: {e}"
                );
                false
            }
        };
        match std::mem::replace(&mut self.growth, Growth::Done) {
            Growth::Initial => {
                self.joined += 1;
                let name = format!("j{}", self.joined);
                let tune = Arc::clone(&self.tune);
                self.cluster.launch_joiner(&name, |c| tune(c)).await;
                self.publish();
                self.growth = Growth::Joining(name);
                self.count("start joiner");
            }
            Growth::Joining(name) => {
                let add = MembershipChange::Add {
                    name: name.clone(),
                    url: self.cluster.node(&name).url().to_string(),
                    learner: true,
                };
                let result = handle.change_membership(add, DEADLINE).await;
                self.growth = if done(result, "is a member already") {
                    self.count("add learner");
                    Growth::Learner(name)
                } else {
                    Growth::Joining(name)
                };
            }
            Growth::Learner(name) => {
                let lead = handle.status().commit_index;
                let caught_up = self.cluster.node(&name).status().applied_index + 10 >= lead;
                let promote = MembershipChange::Promote { name: name.clone() };
                self.growth = if !caught_up {
                    Growth::Learner(name)
                } else if done(
                    handle.change_membership(promote, DEADLINE).await,
                    "is a voter already",
                ) {
                    self.count("promote");
                    Growth::Promoted
                } else {
                    Growth::Learner(name)
                };
            }
            Growth::Promoted => {
                let remove = MembershipChange::Remove {
                    name: leader.clone(),
                };
                if done(
                    handle.change_membership(remove, DEADLINE).await,
                    "unknown member",
                ) {
                    // The removed leader leaves: it must not be needed any more.
                    self.cluster.kill(&leader).await;
                    self.cluster.names.retain(|n| *n != leader);
                    self.publish();
                    self.count("remove leader");
                } else {
                    self.growth = Growth::Promoted;
                }
            }
            Growth::Done => {}
        }
    }

    /// Names of the members running now.
    fn running(&self) -> Vec<String> {
        self.cluster
            .live()
            .iter()
            .map(|h| h.name().to_string())
            .collect()
    }

    /// The node that leads now, if one does.
    fn leader(&self) -> Option<String> {
        self.cluster
            .live()
            .iter()
            .find(|h| h.status().role == Role::Leader)
            .map(|h| h.name().to_string())
    }
}
