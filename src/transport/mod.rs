//! The peer transport: one WebSocket listener per node for inbound traffic, and per peer one
//! outbound connection with its own bounded queue and writer task, so that a slow or dead peer
//! never stalls the driver (Raft tolerates the messages dropped when a queue is full).

mod auth;
mod direct;
mod fault;
mod listener;
mod peer;
mod quiet;
mod registry;
mod seal;
mod tls;
pub mod wire;

use crate::sync::Recover;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use raft::eraftpb::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use fault::FaultFilter;
pub use registry::{MAX_CONNECTIONS, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS};

use crate::error::{Error, Result};
use crate::ids::{raft_id, validate_name};
use crate::limits::MAX_FRAME_BYTES;
use crate::peer_messages::Delivery;

/// Raft message batches a peer's queue holds before new ones are dropped.
const PEER_QUEUE_BATCHES: usize = 1024;
/// Time allowed for the WebSocket upgrade plus our handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An inbound connection that carries nothing for this many election timeouts is closed
/// (a dialer with nothing to send pings four times as often).
const IDLE_ELECTIONS: u32 = 40;
/// Largest WebSocket message accepted before the handshake passed.
const MAX_HANDSHAKE_FRAME: usize = 4 << 10;

/// Checks TLS material: the error says what is wrong with it.
pub fn check_tls(files: &crate::config::TlsFiles) -> std::result::Result<(), String> {
    tls::Tls::new(files).map(|_| ())
}

/// A byte stream a WebSocket runs over: TCP, or TLS over TCP.
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Raft messages received from one peer in one frame.
pub struct Inbound {
    /// The sender's name, as proven by the handshake.
    pub from: String,
    pub messages: Vec<Message>,
    /// Size of the frame (or chunked message) on the wire.
    pub bytes: usize,
    /// Closes the connection that carried the frame, with the reason (hostile content).
    pub reject: Arc<watch::Sender<Option<String>>>,
}

/// The two queues of inbound frames to the driver. Bulk messages (entries or a snapshot:
/// appends, forwarded proposals) travel apart from light ones (heartbeats, votes,
/// acknowledgements), so that a burst of bulk never delays the light: a leader that received
/// 256 MiB of forwarded proposals read its other follower's heartbeat answers only after
/// them, lost its quorum and stepped down. Raft tolerates the reordering this makes between
/// the two kinds (as any network may reorder).
#[derive(Clone)]
pub(crate) struct InboundQueues {
    pub light: mpsc::Sender<Inbound>,
    pub bulk: mpsc::Sender<Inbound>,
}

/// The driver's ends of [`InboundQueues`].
pub(crate) struct InboundReceivers {
    pub light: mpsc::Receiver<Inbound>,
    pub bulk: mpsc::Receiver<Inbound>,
}

impl InboundQueues {
    /// Two queues of `frames` frames each.
    pub(crate) fn new(frames: usize) -> (InboundQueues, InboundReceivers) {
        let (light_tx, light_rx) = mpsc::channel(frames);
        let (bulk_tx, bulk_rx) = mpsc::channel(frames);
        let queues = InboundQueues {
            light: light_tx,
            bulk: bulk_tx,
        };
        let receivers = InboundReceivers {
            light: light_rx,
            bulk: bulk_rx,
        };
        (queues, receivers)
    }

    /// Hands `frame` to the driver, its light and its bulk messages apart; waits while the
    /// driver is behind. Fails once the driver is gone.
    pub(crate) async fn send(&self, mut frame: Inbound) -> std::result::Result<(), ()> {
        let (light, bulk) = lanes(std::mem::take(&mut frame.messages));
        if !light.is_empty() {
            // The frame itself goes on with the bulk part, if any (a frame of one kind, as
            // most are, goes as it came).
            let from = match bulk.is_empty() {
                true => std::mem::take(&mut frame.from),
                false => frame.from.clone(),
            };
            let part = Inbound {
                from,
                bytes: 0,
                messages: light,
                reject: Arc::clone(&frame.reject),
            };
            self.light.send(part).await.map_err(|_| ())?;
        }
        if !bulk.is_empty() {
            // The frame's size is the bulk part's: it bounds the bulk taken in one turn.
            frame.messages = bulk;
            self.bulk.send(frame).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// `messages` parted into their lanes: (light, bulk). A batch of one kind, as most are,
/// is passed on as it is.
fn lanes(messages: Vec<Message>) -> (Vec<Message>, Vec<Message>) {
    let bulk = messages.iter().filter(|m| is_bulk(m)).count();
    if bulk == 0 {
        (messages, Vec::new())
    } else if bulk == messages.len() {
        (Vec::new(), messages)
    } else {
        messages.into_iter().partition(|m| !is_bulk(m))
    }
}

/// A message that carries entries or a snapshot, or an append (even an empty one: it must
/// not overtake the appends before it, or the follower finds a gap and rejects it). Reads
/// the raw type: a hostile message may carry a type no variant has.
pub(crate) fn is_bulk(m: &Message) -> bool {
    use raft::eraftpb::MessageType;
    !m.entries.is_empty()
        || m.snapshot.is_some()
        || m.msg_type == MessageType::MsgAppend as i32
        || m.msg_type == MessageType::MsgSnapshot as i32
}

/// Reports to the driver what became of a batch that was dropped.
fn report_dropped(reports: &mpsc::UnboundedSender<Delivery>, to: u64, batch: &[Message]) {
    let _ = reports.send(Delivery::Unreachable(to));
    report_snapshots(reports, to, batch, false);
}

/// Reports each snapshot in `batch` as delivered or lost.
fn report_snapshots(
    reports: &mpsc::UnboundedSender<Delivery>,
    to: u64,
    batch: &[Message],
    delivered: bool,
) {
    for _ in batch.iter().filter(|m| is_snapshot(m)) {
        let _ = reports.send(Delivery::Snapshot { to, delivered });
    }
}

fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot
}

/// Traffic counters of one node's transport.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Large raft messages (snapshots) sent in chunks, counted as their first chunk leaves.
    pub chunked_messages: AtomicU64,
    /// Outbound connections established (a steady cluster stops adding to it).
    pub connections_opened: AtomicU64,
    /// Outbound connections open now.
    pub connections_open: AtomicU64,
    /// Inbound frames refused for their size, their number of messages or (with a secret)
    /// failed authentication: forged, replayed, reordered or cut (each closed its connection).
    pub frames_refused: AtomicU64,
}

/// State shared by the driver side, the control side and the connection tasks.
struct Shared {
    stats: TransportStats,
    name: String,
    cluster_id: String,
    /// Peers must prove it, and this node proves it to them.
    secret: Option<crate::config::Secret>,
    /// TLS on both sides of every connection.
    tls: Option<tls::Tls>,
    faults: FaultFilter,
    peers: RwLock<HashMap<u64, PeerLink>>,
    /// Inbound connection bounds, admitted names, one live connection per member.
    registry: registry::Registry,
    refusals: registry::RefusalLog,
    /// The leader as the driver last saw it (0: none): only it sends chunked messages.
    leader: AtomicU64,
    /// An inbound connection silent this long is closed.
    idle_timeout: Duration,
    /// What became of sent messages, for the driver.
    reports: mpsc::UnboundedSender<Delivery>,
    /// Every task of the transport; `None` once the transport is shut down or dropped.
    tasks: Mutex<Option<JoinSet<()>>>,
    runtime: tokio::runtime::Handle,
    /// Where this node's application serves HTTP (`""`: not advertised), told to every peer.
    http_url: String,
    /// The HTTP URLs members advertised in their handshakes with this node.
    http_urls: RwLock<HashMap<String, String>>,
    /// The node's log: transport tasks may be spawned from any thread (a handle's call).
    log: Option<Arc<crate::logging::NodeLog>>,
}

/// The driver's way to one peer: light messages (heartbeats, votes, acknowledgements) in a
/// queue of their own, which the writer serves first and between the frames of bulk ones,
/// so that a follower catching up a large backlog still hears its leader's heartbeats on
/// time (behind 120 MiB of appends they arrived late enough for elections).
struct PeerLink {
    name: String,
    url: watch::Sender<String>,
    light: mpsc::Sender<Vec<Message>>,
    bulk: mpsc::Sender<Vec<Message>>,
    /// Asks the writer to dial now, with nothing to send (is the peer still there?).
    probe: Arc<tokio::sync::Notify>,
    /// The connection's write half while the writer has nothing queued.
    direct: Arc<direct::DirectSlot>,
}

impl PeerLink {
    /// Sends `batch` without waiting: at once on the connection when its writer has lent it
    /// (see [`direct`]), or through the queues. Returns what was dropped.
    fn send(&self, batch: Vec<Message>, shared: &Shared) -> Vec<Message> {
        self.direct
            .send(batch, &shared.stats.bytes_sent, |batch| self.queue(batch))
    }

    /// Queues `batch` without waiting; returns what did not fit.
    fn queue(&self, batch: Vec<Message>) -> Vec<Message> {
        let (light, bulk) = lanes(batch);
        let mut dropped = Vec::new();
        for (queue, part) in [(&self.light, light), (&self.bulk, bulk)] {
            if part.is_empty() {
                continue;
            }
            if let Err(e) = queue.try_send(part) {
                dropped.extend(e.into_inner());
            }
        }
        dropped
    }
}

/// The WebSocket settings of a connection that carries raft frames to us.
fn ws_config() -> WebSocketConfig {
    // tungstenite zero-fills `read_buffer_size` bytes before every read (and a reader polls
    // once more after each frame); raft frames are mostly small, so a small read buffer saves
    // a 128 KiB memset per frame (large frames still grow the buffer as they need, read
    // 4 KiB a call). From 16 KiB to 4: p50 of a sequential write -4 us, and more writes/s
    // at 256 in flight, not fewer (bench/run.mjs).
    WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// The settings while only handshake frames may arrive (and on the dialer's side, which
/// only ever receives those): an unauthenticated peer cannot make us buffer a large frame.
fn ws_handshake_config() -> WebSocketConfig {
    ws_config()
        .max_message_size(Some(MAX_HANDSHAKE_FRAME))
        .max_frame_size(Some(MAX_HANDSHAKE_FRAME))
        // The dialer's writer polls its read half each time it wakes (a pong? a refusal?),
        // and each poll zero-fills this much first.
        .read_buffer_size(1 << 10)
}

/// The driver's side of the transport.
pub(crate) struct Transport {
    shared: Arc<Shared>,
}

/// The control side: peer addresses and fault injection, usable from any handle.
#[derive(Clone)]
pub struct TransportControl {
    shared: Arc<Shared>,
}

impl Transport {
    /// Binds the configured address, starts accepting peers and dials the configured
    /// peers. Inbound frames go to `inbound`, delivery reports to `reports`. Returns the
    /// bound address.
    pub(crate) async fn start(
        config: &crate::config::Config,
        inbound: InboundQueues,
        reports: mpsc::UnboundedSender<Delivery>,
    ) -> Result<(Transport, SocketAddr)> {
        let listen = &config.listen_addr();
        let name = config.name.as_str();
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => Error::AddrInUse(listen.to_string()),
                _ => Error::Invalid(format!("cannot listen on {listen}: {e}")),
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Invalid(format!("cannot read the bound address: {e}")))?;
        if !addr.ip().is_loopback() && config.secret.is_none() && config.tls.is_none() {
            // Only with `insecure: true` (the config refuses it otherwise).
            tracing::info!(
                %addr,
                "listening beyond this machine without a secret or tls (insecure: the peer \
                 network is trusted; see README, Peer security)"
            );
        }
        let tls = match &config.tls {
            Some(files) => Some(tls::Tls::new(files).map_err(Error::Invalid)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            cluster_id: config.cluster_id.clone(),
            secret: config.secret.clone(),
            tls,
            faults: FaultFilter::default(),
            stats: TransportStats::default(),
            peers: RwLock::new(HashMap::new()),
            registry: registry::Registry::new(config.election_timeout),
            refusals: registry::RefusalLog::new(),
            leader: AtomicU64::new(0),
            idle_timeout: config.election_timeout * IDLE_ELECTIONS,
            reports,
            tasks: Mutex::new(Some(JoinSet::new())),
            runtime: tokio::runtime::Handle::current(),
            log: crate::logging::current(),
            http_url: config.http_url.clone().unwrap_or_default(),
            http_urls: RwLock::new(HashMap::new()),
        });
        shared.spawn(listener::run(Arc::clone(&shared), listener, inbound));
        let control = TransportControl {
            shared: Arc::clone(&shared),
        };
        for (peer, url) in config.peers.iter().filter(|(peer, _)| *peer != name) {
            control.set_peer_url(peer, url)?;
        }
        Ok((Transport { shared }, addr))
    }

    /// The control side of this transport.
    pub(crate) fn control(&self) -> TransportControl {
        TransportControl {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Queues messages for their peers, grouped per peer. Never waits: a full queue, an
    /// unknown peer or a blocked one drops the message (and the drop is reported).
    pub(crate) fn send(&self, messages: Vec<Message>) {
        // A few peers: a list, not a hash map (this runs for every Ready).
        let mut per_peer: Vec<(u64, Vec<Message>)> = Vec::new();
        for m in messages {
            match per_peer.iter_mut().find(|(to, _)| *to == m.to) {
                Some((_, batch)) => batch.push(m),
                None => per_peer.push((m.to, vec![m])),
            }
        }
        let peers = self.shared.peers.read().recover();
        for (to, mut batch) in per_peer {
            let Some(link) = peers.get(&to) else {
                tracing::trace!(to, "no address for peer; dropped");
                report_dropped(&self.shared.reports, to, &batch);
                continue;
            };
            if self.shared.faults.is_blocked(&link.name) {
                report_dropped(&self.shared.reports, to, &batch);
                continue;
            }
            // Snapshots are rare: only a batch that carries one is looked at for the fault.
            if batch.iter().any(is_snapshot) {
                let (lost, kept): (Vec<Message>, Vec<Message>) = batch
                    .into_iter()
                    .partition(|m| is_snapshot(m) && self.shared.faults.loses_snapshot(&link.name));
                report_snapshots(&self.shared.reports, to, &lost, false);
                batch = kept;
                if batch.is_empty() {
                    continue;
                }
            }
            let dropped = link.send(batch, &self.shared);
            if !dropped.is_empty() {
                tracing::debug!(peer = %link.name, "peer queue full; dropped");
                report_dropped(&self.shared.reports, to, &dropped);
            }
        }
    }

    /// Stops every connection and the listener, and waits until the port is released.
    pub(crate) async fn shutdown(self) {
        if let Some(mut tasks) = self.shared.take_tasks() {
            tasks.shutdown().await;
        }
    }
}

/// A driver that ends without `shutdown` (a killed node) still takes its sockets down:
/// dropping the task set aborts every task.
impl Drop for Transport {
    fn drop(&mut self) {
        drop(self.shared.take_tasks());
    }
}

impl Shared {
    /// Asks the writer to `member` to dial it now: a connection from it ended, and a
    /// refused dial tells at once whether its node is gone.
    fn probe(&self, member: &str) {
        if let Some(link) = self.peers.read().recover().get(&raft_id(member)) {
            link.probe.notify_one();
        }
    }

    /// The peer URL this node knows for `member`, if any.
    fn peer_url(&self, member: &str) -> Option<String> {
        let peers = self.peers.read().recover();
        let url = peers.get(&raft_id(member))?.url.borrow().clone();
        (!url.is_empty()).then_some(url)
    }

    /// Remembers the HTTP URL a member advertised (or that it advertises none).
    fn learn_http_url(&self, member: &str, url: String) {
        let mut urls = self.http_urls.write().recover();
        if url.is_empty() {
            urls.remove(member);
        } else {
            urls.insert(member.to_string(), url);
        }
    }

    /// Spawns a transport task, unless the transport is already down.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(tasks) = self.tasks.lock().recover().as_mut() {
            tasks.spawn_on(
                crate::logging::within(self.log.clone(), task),
                &self.runtime,
            );
        }
    }

    fn take_tasks(&self) -> Option<JoinSet<()>> {
        self.peers.write().recover().clear();
        self.tasks.lock().recover().take()
    }
}

impl TransportControl {
    /// Sets (or changes) the URL at which `peer` listens; a writer task is started for a
    /// peer seen for the first time, and an existing one reconnects to the new URL.
    pub fn set_peer_url(&self, peer: &str, url: &str) -> Result<()> {
        validate_name(peer).map_err(|e| Error::Invalid(format!("invalid peer name: {e}")))?;
        if !url.is_empty() {
            crate::config::parse_ws_url(url).map_err(Error::Invalid)?;
        }
        if peer == self.shared.name {
            return Ok(());
        }
        let mut peers = self.shared.peers.write().recover();
        if let Some(link) = peers.get(&raft_id(peer)) {
            link.url.send_replace(url.to_string());
            return Ok(());
        }
        let (url_tx, url_rx) = watch::channel(url.to_string());
        let (light_tx, light_rx) = mpsc::channel(PEER_QUEUE_BATCHES);
        let (bulk_tx, bulk_rx) = mpsc::channel(PEER_QUEUE_BATCHES);
        let probe = Arc::new(tokio::sync::Notify::new());
        let direct = Arc::new(direct::DirectSlot::default());
        self.shared.spawn(peer::run(
            Arc::clone(&self.shared),
            peer.to_string(),
            url_rx,
            peer::Queues::new(light_rx, bulk_rx),
            Arc::clone(&probe),
            Arc::clone(&direct),
        ));
        peers.insert(
            raft_id(peer),
            PeerLink {
                name: peer.to_string(),
                url: url_tx,
                light: light_tx,
                bulk: bulk_tx,
                probe,
                direct,
            },
        );
        Ok(())
    }

    /// Sets the URL of `peer` unless one is known already.
    pub fn set_peer_url_if_unknown(&self, peer: &str, url: &str) -> Result<()> {
        let known = self
            .shared
            .peers
            .read()
            .recover()
            .get(&raft_id(peer))
            .is_some_and(|link| !link.url.borrow().is_empty());
        if known {
            return Ok(());
        }
        self.set_peer_url(peer, url)
    }

    /// The names admitted at the handshake: the members of the current configuration (an
    /// empty one admits any name: a joining node does not know its cluster yet).
    pub fn set_members(&self, ids: impl IntoIterator<Item = u64>) {
        self.shared.registry.set_members(ids);
    }

    /// The current leader (0 for none), from whom alone chunked messages are taken.
    pub fn set_leader(&self, id: u64) {
        self.shared
            .leader
            .store(id, std::sync::atomic::Ordering::Relaxed);
    }

    /// The fault switch of this node.
    pub fn faults(&self) -> &FaultFilter {
        &self.shared.faults
    }

    /// The HTTP URL `member` advertised in its last handshake with this node, if any.
    pub fn http_url(&self, member: &str) -> Option<String> {
        self.shared.http_urls.read().recover().get(member).cloned()
    }

    /// Traffic counters.
    pub fn stats(&self) -> &TransportStats {
        &self.shared.stats
    }
}

/// Closes a WebSocket with a policy-violation code and a reason (cut to the 123 bytes a
/// close frame allows).
async fn close_with_reason<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame};
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: reason[..cut].to_string().into(),
    };
    // Then read (and discard) what the peer still sends until it answers the close, within
    // the same second: a socket closed with unread bytes in it is reset, and a reset loses
    // the close frame and its reason on the way (a peer that keeps writing, as a refused
    // member with a full queue does, would never learn why; a hostile-input test that read
    // the reason failed about once in two runs for this).
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = ws.close(Some(frame)).await;
        let _ = ws.flush().await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
