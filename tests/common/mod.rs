//! A loopback cluster for the engine tests: real nodes, real WebSockets on 127.0.0.1 with
//! ephemeral ports, an event recorder per node, and a check that no term ever had two leaders.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftline::{AppliedEntry, Config, Event, Node, NodeHandle, Role};

/// Generous bound for conditions that normally hold within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Taken by tests of one file that must run one at a time, so that each cluster has the
/// machine's two cores (as a node has its own process in production) and its timing is its
/// own: heavy ones (`sizes.rs`), and durable ones whose fsyncs, eight clusters at once on a
/// loaded machine, stalled a follower past the fast election timeout (a check-quorum
/// step-down failed a write).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the nodes reported, shared with the recorder tasks.
#[derive(Default)]
pub struct Record {
    /// Applied entries per node, in the order delivered.
    pub applied: HashMap<String, Vec<AppliedEntry>>,
    /// Who became leader in each term.
    pub leaders: HashMap<u64, String>,
    /// Terms in which two nodes became leader (must stay empty).
    pub violations: Vec<String>,
    /// Fatal faults reported by nodes (must stay empty).
    pub failures: Vec<String>,
    /// Lease gained (true) or lost (false), per node, when the event arrived.
    pub leases: Vec<(Instant, String, bool)>,
    /// When each node became leader.
    pub elected: Vec<(Instant, String, u64)>,
    /// Snapshots taken or installed: (node, index).
    pub snapshots: Vec<(String, u64)>,
    /// Peer health changes seen by each node: (observer, peer, health).
    pub health: Vec<(String, String, raftline::Health)>,
}

impl Record {
    /// Overlapping lease intervals of different nodes (must stay empty).
    fn lease_overlaps(&self) -> Vec<String> {
        let mut holder: Option<&str> = None;
        let mut overlaps = Vec::new();
        for (at, name, held) in &self.leases {
            match (held, holder) {
                (true, Some(other)) if other != name => overlaps.push(format!(
                    "{name} gained the lease at {at:?} while {other} held it"
                )),
                (true, _) => holder = Some(name),
                (false, Some(other)) if other == name => holder = None,
                (false, _) => {}
            }
        }
        overlaps
    }
}

pub struct Cluster {
    pub names: Vec<String>,
    configs: HashMap<String, Config>,
    nodes: HashMap<String, Node>,
    pub handles: HashMap<String, NodeHandle>,
    pub record: Arc<Mutex<Record>>,
}

/// Each node logs at its `log_level` (warn unless a test says otherwise) to stderr.
pub fn init_tracing() {
    raftline::logging::install();
}

/// Heartbeat 10 ms, election 50 ms.
pub fn fast(config: &mut Config) {
    config.heartbeat = Duration::from_millis(10);
    config.election_timeout = Duration::from_millis(50);
}

impl Cluster {
    /// Starts `size` nodes named n1..nN with `tune` applied to each config.
    pub async fn start(size: usize, tune: impl Fn(&mut Config)) -> Cluster {
        init_tracing();
        let names: Vec<String> = (1..=size).map(|i| format!("n{i}")).collect();
        let record = Arc::new(Mutex::new(Record::default()));
        let mut cluster = Cluster {
            names: names.clone(),
            configs: HashMap::new(),
            nodes: HashMap::new(),
            handles: HashMap::new(),
            record,
        };
        for name in &names {
            let mut config = Config::new(name.clone());
            config.listen = Some("127.0.0.1:0".into());
            config.peers = names.iter().map(|n| (n.clone(), String::new())).collect();
            tune(&mut config);
            cluster.configs.insert(name.clone(), config);
            cluster.launch(name).await.expect("node starts");
        }
        cluster
    }

    /// Starts `name` from its config (again, after a kill: same data directory), and
    /// exchanges URLs with the running nodes.
    pub async fn launch(&mut self, name: &str) -> raftline::Result<()> {
        let mut node = raftline::start(self.configs[name].clone()).await?;
        // A restarted node reports its log again from its snapshot on.
        self.record.lock().unwrap().applied.remove(name);
        spawn_recorder(name.to_string(), &mut node, Arc::clone(&self.record));
        let handle = node.handle();
        for other in self.live() {
            other.set_peer_url(name, handle.url()).expect("url");
            handle.set_peer_url(other.name(), other.url()).expect("url");
        }
        self.handles.insert(name.to_string(), handle);
        self.nodes.insert(name.to_string(), node);
        Ok(())
    }

    /// Starts `name` empty, to be added by the leader (`join`), knowing where the members
    /// are. It joins `names` (and so the live nodes' URL exchange).
    pub async fn launch_joiner(&mut self, name: &str, tune: impl Fn(&mut Config)) -> NodeHandle {
        let mut config = Config::new(name);
        config.listen = Some("127.0.0.1:0".into());
        config.join = true;
        config.peers = self.live_urls();
        tune(&mut config);
        self.names.push(name.to_string());
        self.configs.insert(name.to_string(), config);
        self.launch(name).await.expect("a joining node starts");
        self.handles[name].clone()
    }

    /// Changes the config a node starts from next time.
    pub fn config_mut(&mut self, name: &str) -> &mut Config {
        self.configs.get_mut(name).expect("known node")
    }

    pub fn node(&self, name: &str) -> &NodeHandle {
        &self.handles[name]
    }

    /// Handles of the nodes still running.
    pub fn live(&self) -> Vec<&NodeHandle> {
        self.names
            .iter()
            .filter(|n| self.nodes.contains_key(*n))
            .map(|n| &self.handles[n])
            .collect()
    }

    /// Name -> URL of the nodes still running: the `peers` of a node from outside.
    pub fn live_urls(&self) -> std::collections::BTreeMap<String, String> {
        self.live()
            .iter()
            .map(|h| (h.name().to_string(), h.url().to_string()))
            .collect()
    }

    /// Waits until exactly one live node leads and every live node in `among` follows it.
    pub async fn wait_for_leader_among(&self, among: &[&str]) -> String {
        let outcome = wait_until(DEADLINE, || {
            let statuses: Vec<_> = among.iter().map(|n| self.handles[*n].status()).collect();
            let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
            match leaders.as_slice() {
                [one]
                    if statuses
                        .iter()
                        .all(|s| s.leader.as_deref() == Some(one.name.as_str())) =>
                {
                    Some(one.name.clone())
                }
                _ => None,
            }
        })
        .await;
        outcome.unwrap_or_else(|| {
            panic!(
                "no single agreed leader among {among:?}: {:?}",
                self.describe()
            )
        })
    }

    /// A member other than `name` (the first by name).
    pub fn other_than(&self, name: &str) -> String {
        self.names
            .iter()
            .find(|n| *n != name)
            .expect("another member")
            .clone()
    }

    pub async fn wait_for_leader(&self) -> String {
        let live: Vec<String> = self.live().iter().map(|h| h.name().to_string()).collect();
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        self.wait_for_leader_among(&live).await
    }

    pub fn describe(&self) -> Vec<String> {
        self.live()
            .iter()
            .map(|h| {
                let s = h.status();
                format!(
                    "{}:{:?} t{} lead={:?} applied={}",
                    s.name, s.role, s.term, s.leader, s.applied_index
                )
            })
            .collect()
    }

    /// Kills a node abruptly (no handoff, no goodbye).
    pub async fn kill(&mut self, name: &str) {
        let node = self.nodes.remove(name).expect("node is running");
        node.kill().await;
        // A dead node holds nothing: close its lease interval in the record.
        self.record
            .lock()
            .unwrap()
            .leases
            .push((Instant::now(), name.to_string(), false));
    }

    /// Drops all traffic between the two groups, both ways.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        for x in a {
            for y in b {
                self.handles[*x].faults().block(y);
                self.handles[*y].faults().block(x);
            }
        }
    }

    pub fn heal(&self) {
        for h in self.handles.values() {
            h.faults().clear();
        }
    }

    /// Waits until every live node has applied the same entries, and returns them. A marker
    /// written through the leader first makes sure the records are complete: events arrive
    /// in log order, so a record that holds the marker holds everything applied before it.
    pub async fn wait_converged(&self) -> Vec<(u64, u64)> {
        let live: Vec<String> = self.live().iter().map(|h| h.name().to_string()).collect();
        let leader = self.wait_for_leader().await;
        let marker = self
            .node(&leader)
            .set("__converged", vec![], Default::default())
            .await
            .expect("the marker write");
        let recorded = wait_until(DEADLINE, || {
            let record = self.record.lock().unwrap();
            live.iter()
                .all(|n| {
                    record
                        .applied
                        .get(n)
                        .is_some_and(|log| log.iter().any(|e| e.index >= marker.index))
                })
                .then_some(())
        })
        .await;
        assert!(
            recorded.is_some(),
            "every live node reports the marker: {:?}",
            self.describe()
        );
        let converged = wait_until(DEADLINE, || {
            let record = self.record.lock().unwrap();
            let logs: Vec<Vec<(u64, u64)>> = live
                .iter()
                .map(|n| {
                    record
                        .applied
                        .get(n)
                        .map(|entries| entries.iter().map(|e| (e.index, e.term)).collect())
                        .unwrap_or_default()
                })
                .collect();
            let commit = self
                .live()
                .iter()
                .map(|h| h.status().commit_index)
                .max()
                .unwrap_or(0);
            let applied_all = self
                .live()
                .iter()
                .all(|h| h.status().applied_index == commit);
            (applied_all && logs.windows(2).all(|w| w[0] == w[1])).then(|| logs[0].clone())
        })
        .await;
        converged.unwrap_or_else(|| panic!("logs did not converge: {:?}", self.describe()))
    }

    /// The whole key-value state a node has applied.
    pub async fn state(&self, name: &str) -> Vec<(String, Vec<u8>)> {
        self.node(name)
            .entries("", raftline::Consistency::Local)
            .await
            .expect("local reads never fail")
    }

    /// Full applied sequences per node.
    pub fn applied(&self, name: &str) -> Vec<AppliedEntry> {
        self.record
            .lock()
            .unwrap()
            .applied
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Asserts that no term had two leaders and that no node failed.
    pub fn assert_safe(&self) {
        let record = self.record.lock().unwrap();
        assert!(
            record.violations.is_empty(),
            "two leaders in one term: {:?}",
            record.violations
        );
        assert!(
            record.failures.is_empty(),
            "nodes failed: {:?}",
            record.failures
        );
    }

    pub async fn stop(mut self) {
        self.assert_safe();
        for (_, node) in self.nodes.drain() {
            node.stop().await;
        }
    }
}

fn spawn_recorder(name: String, node: &mut Node, record: Arc<Mutex<Record>>) {
    let mut events = node.take_events().expect("events");
    tokio::spawn(async move {
        while let Some(batch) = events.recv().await {
            let mut record = record.lock().unwrap();
            for event in batch {
                match event {
                    Event::Applied(entries) => record
                        .applied
                        .entry(name.clone())
                        .or_default()
                        .extend(entries),
                    Event::LeaseChanged { held, .. } => {
                        record.leases.push((Instant::now(), name.clone(), held))
                    }
                    Event::RoleChanged {
                        role: Role::Leader,
                        term,
                        ..
                    } => {
                        record.elected.push((Instant::now(), name.clone(), term));
                        if let Some(other) = record.leaders.get(&term) {
                            if *other != name {
                                let v = format!("term {term}: {other} and {name}");
                                record.violations.push(v);
                            }
                        }
                        record.leaders.insert(term, name.clone());
                    }
                    Event::Failed { message, .. } => {
                        record.failures.push(format!("{name}: {message}"))
                    }
                    Event::Snapshot { index, .. } => record.snapshots.push((name.clone(), index)),
                    Event::PeerHealth { peer, health, .. } => {
                        record.health.push((name.clone(), peer, health))
                    }
                    _ => {}
                }
            }
        }
    });
}

/// Re-evaluates `check` every few milliseconds until it yields a value or `deadline` passes.
pub async fn wait_until<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A fresh, empty directory for one test's data, removed by [`TempDir`]'s drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("raftline-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn join(&self, part: &str) -> std::path::PathBuf {
        self.0.join(part)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A fresh random secret (hex), as test clusters use by default.
pub fn random_secret() -> String {
    (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}
