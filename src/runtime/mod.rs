//! Starting a node: bind, build the core, spawn the driver.

use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub(crate) mod driver;
pub mod handle;
pub mod metrics;
mod stay_awake;

use crate::config::Config;
use crate::core::events::Event;
use crate::core::Core;
use crate::error::Error;
use crate::error::Result;
use crate::logging::{self, NodeLog};
use crate::runtime::driver::Driver;
use crate::runtime::handle::{HandleState, NodeHandle};
use crate::state_machine::KvStore;
use crate::storage::{bootstrap_log, mem_storage, DiskStorage, LogStore};
use crate::transport::Transport;

/// Requests (writes, reads, membership changes) queued to the driver; past it a request
/// fails at once with `ERR_OVERLOADED` (a burst is taken 1,024 a turn).
const REQUEST_QUEUE: usize = 65_536;
/// Inbound frames queued to the driver (in each of its two queues) before connections wait.
const INBOUND_QUEUE: usize = 1024;

/// The receiving end of a node's events: one `Vec` per Ready, in order.
pub type EventStream = mpsc::UnboundedReceiver<Vec<Event>>;

/// A running node: its handle, its event stream and its driver task.
pub struct Node {
    handle: NodeHandle,
    events: Option<EventStream>,
    driver: JoinHandle<()>,
}

/// Validates `config`, binds the listener and starts the node (in memory). Must run inside a
/// tokio runtime. Fails with `AddrInUse`, `Invalid` or `Storage`, leaving nothing running.
pub async fn start(config: Config) -> Result<Node> {
    config.validate()?;
    // Every task of the node logs as this node (its level, its sink).
    let log = NodeLog::new(&config.name, config.log_level, config.log_sink.clone());
    logging::within(Some(log), start_logged(config)).await
}

async fn start_logged(config: Config) -> Result<Node> {
    // A new cluster starts from a snapshot of its initial voters; a joining node starts
    // empty and receives the configuration from the leader.
    let bootstrap = (!config.join).then(|| {
        let mut members: Vec<(String, String)> = config
            .peers
            .iter()
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        if !config.peers.contains_key(&config.name) {
            members.push((config.name.clone(), String::new()));
        }
        bootstrap_log(&members)
    });
    match config.data_dir.clone() {
        Some(dir) => {
            // Recovery reads the whole log: keep it off the async workers.
            let wal = crate::storage::WalOptions {
                segment_bytes: config.wal_segment_bytes,
                emulate_power_loss: config.emulate_power_loss,
            };
            let log = logging::current();
            let (name, force) = (config.name.clone(), config.force_new_cluster);
            let store = tokio::task::spawn_blocking(move || {
                logging::within_sync(log, || {
                    let mut store = DiskStorage::open(&dir, &name, bootstrap, wal)?;
                    if force {
                        force_new_cluster(&mut store, &name)?;
                    }
                    Ok::<_, Error>(store)
                })
            })
            .await
            .map_err(|e| Error::Storage(format!("recovery failed: {e}")))??;
            spawn_node(config, store).await
        }
        None => spawn_node(config, mem_storage(bootstrap)).await,
    }
}

async fn spawn_node<S: LogStore>(config: Config, store: S) -> Result<Node> {
    let kv = Arc::new(RwLock::new(KvStore::default()));
    let mut core = Core::new(&config, store, Arc::clone(&kv))?;

    let (inbound_tx, inbound_rx) = crate::transport::InboundQueues::new(INBOUND_QUEUE);
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let (transport, addr) = Transport::start(&config, inbound_tx, reports_tx).await?;
    let (members_version, members) = core.member_ids();
    let published_leadership = core.leadership();
    transport.control().set_members(members.iter().copied());
    let url = match config.peers.get(&config.name) {
        Some(url) if !url.is_empty() => url.clone(),
        _ if config.tls.is_some() => format!("wss://{addr}"),
        _ => format!("ws://{addr}"),
    };
    core.set_own_url(&url);
    let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(core.status());
    let applied_events = core.applied_events();
    let members = core.members_view();
    let session_deadlines = core.session_deadlines();
    let metrics = Arc::new(crate::runtime::metrics::NodeMetrics::default());
    let turn_end = Arc::new(crate::runtime::handle::TurnEnd::default());
    let handle = NodeHandle::new(HandleState {
        name: config.name.clone(),
        requests: requests_tx,
        status: status_rx,
        kv,
        history: core.history(),
        transport: transport.control(),
        addr,
        url,
        http_url: config.http_url.clone(),
        applied_events,
        members,
        session_deadlines,
        metrics: Arc::clone(&metrics),
        turn_end: Arc::clone(&turn_end),
    });
    let driver = Driver {
        core,
        transport,
        requests: requests_rx,
        inbound: inbound_rx,
        reports: reports_rx,
        events: events_tx,
        status: status_tx,
        tick: config.ticks().0,
        lease_log: config.lease_log.clone(),
        members_version,
        published_leadership,
        metrics,
        snapshots: crate::runtime::driver::SnapshotRunner::new(),
        busy: false,
        turn_end,
    };
    let driver = tokio::spawn(logging::inherit(driver.run()));
    Ok(Node {
        handle,
        events: Some(events_rx),
        driver,
    })
}

impl Node {
    /// A handle to the node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The event stream (once; later calls return `None`).
    pub fn take_events(&mut self) -> Option<EventStream> {
        self.events.take()
    }

    /// Graceful stop (see [`NodeHandle::stop`]).
    pub async fn stop(self) {
        self.handle.stop().await;
        let _ = self.driver.await;
    }

    /// Abrupt stop, as if the process died between two driver turns: no leadership
    /// handoff, nothing flushed beyond what each Ready persisted (persistence is synchronous
    /// within a turn, so a kill mid-turn would lose nothing more). Returns once the port is
    /// released. The engine's stop is just as abrupt: handing leadership over first is the
    /// caller's choice (`transfer_leadership`).
    pub async fn kill(self) {
        self.stop().await;
    }
}

/// Rewrites the log of `store` so that member `name` starts as a one-member cluster, saying
/// so loudly: the other members' data no longer counts.
fn force_new_cluster(store: &mut DiskStorage, name: &str) -> Result<()> {
    match crate::operations::recovery::force_new_cluster(store, name)? {
        Some(done) => tracing::warn!(
            removed = ?done.removed,
            uncommitted = done.uncommitted,
            commit = done.commit,
            "forceNewCluster: {name} now starts as the only member of a new cluster, from its \
             data up to index {} ({} entries past the commit index it had recorded are kept); \
             removed {:?}. Add members back with addMember, and start without \
             forceNewCluster from now on",
            done.commit,
            done.uncommitted,
            done.removed
        ),
        None => tracing::warn!(
            "forceNewCluster: {name} is already the only member; nothing to do (start without \
             forceNewCluster)"
        ),
    }
    Ok(())
}
