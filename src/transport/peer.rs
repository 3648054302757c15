//! Outbound side: one task per peer dials it, proves who we are, and writes queued raft
//! messages, many per frame. On failure it redials with jittered exponential backoff and
//! discards what queues meanwhile (Raft resends what matters).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use raft::eraftpb::Message;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{ws_handshake_config, Shared, HANDSHAKE_TIMEOUT};
use std::sync::atomic::Ordering;

use serde_bytes::ByteBuf;

use super::auth::{self, Side, Transcript};
use super::direct::{DirectSlot, PeerSocket, Writer};
use super::quiet::Quiet;
use super::seal::{Sealer, SessionKeys};
use crate::ids::raft_id;
use crate::peer_messages::{drop_overdue, Delivery};
use crate::transport::wire::{check_welcome, Frame, MAX_MESSAGES_PER_FRAME, PROTOCOL_VERSION};

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The two queues of one peer's messages (see [`super::PeerLink`]).
pub(super) struct Queues {
    light: mpsc::Receiver<Vec<Message>>,
    bulk: mpsc::Receiver<Vec<Message>>,
}

impl Queues {
    pub(super) fn new(
        light: mpsc::Receiver<Vec<Message>>,
        bulk: mpsc::Receiver<Vec<Message>>,
    ) -> Queues {
        Queues { light, bulk }
    }

    /// The next batch, light ones first; `None` once the transport dropped the queues.
    async fn recv(&mut self) -> Option<Vec<Message>> {
        tokio::select! {
            biased;
            Some(batch) = self.light.recv() => Some(batch),
            Some(batch) = self.bulk.recv() => Some(batch),
            else => None,
        }
    }

    /// What else waits in the queue `like` came from, appended to it, up to a frame's count.
    fn take_more_like(&mut self, batch: &mut Vec<Message>) {
        let light = !batch.iter().any(super::is_bulk);
        let queue = if light {
            &mut self.light
        } else {
            &mut self.bulk
        };
        while batch.len() < MAX_MESSAGES_PER_FRAME {
            match queue.try_recv() {
                Ok(mut more) => batch.append(&mut more),
                Err(_) => break,
            }
        }
    }

    /// The next batch waiting now, light ones first.
    fn try_next(&mut self) -> Option<Vec<Message>> {
        self.light
            .try_recv()
            .ok()
            .or_else(|| self.bulk.try_recv().ok())
    }

    /// Light messages waiting now, if any.
    fn waiting_light(&mut self) -> Option<Vec<Message>> {
        let mut batch = self.light.try_recv().ok()?;
        self.take_more_like(&mut batch);
        Some(batch)
    }
}

/// Why a dial failed; `refused`: the peer's host refused the TCP connection (nothing
/// listens at its address).
struct DialFailure {
    reason: String,
    refused: bool,
}

impl From<String> for DialFailure {
    fn from(reason: String) -> Self {
        DialFailure {
            reason,
            refused: false,
        }
    }
}

/// The pauses between the dials made with nothing to send after a connection to the peer
/// was lost, or when asked to probe it, until one connects: the first goes at once, and a
/// dying node's listener may still take it (its process is closing its sockets one by one).
const PROBE_PAUSES: [Duration; 5] = [
    Duration::from_millis(1),
    Duration::from_millis(3),
    Duration::from_millis(10),
    Duration::from_millis(30),
    Duration::from_millis(100),
];
/// Dials made so: one, and one after each pause.
const PROBE_DIALS: usize = PROBE_PAUSES.len() + 1;

/// Runs until aborted: wait for something to send, dial, write, redial. A node dials a peer
/// only once it has something for it (a joining node, which members refuse until they
/// have added it, first hears from the leader and then answers), or when asked to `probe`
/// it, and at once after a connection to it is lost (see [`PROBE_DIALS`]). A refused dial
/// is reported as [`Delivery::Gone`](crate::peer_messages::Delivery::Gone): that is how a
/// follower learns within milliseconds that its leader's process died.
pub(super) async fn run(
    shared: Arc<Shared>,
    peer: String,
    mut url: watch::Receiver<String>,
    mut queues: Queues,
    probe: Arc<tokio::sync::Notify>,
    slot: Arc<DirectSlot>,
) {
    let mut delays = backoff();
    let mut held = Held::default();
    // Dials still to make with nothing to send: a connection was lost, or a probe asked.
    let mut probes = 0;
    loop {
        let mut first = if !held.messages.is_empty() {
            held.take()
        } else if probes > 0 {
            probes -= 1;
            Vec::new()
        } else {
            tokio::select! {
                batch = queues.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
                () = probe.notified() => {
                    probes = PROBE_DIALS - 1;
                    Vec::new()
                }
                changed = url.changed() => if changed.is_ok() { continue } else { return },
            }
        };
        let target = url.borrow_and_update().clone();
        let outcome = if target.is_empty() {
            Err(DialFailure::from("no address known".to_string()))
        } else {
            dial(&shared, &peer, &target).await
        };
        match outcome {
            Ok(link) => {
                delays = backoff();
                probes = 0;
                tracing::debug!(%peer, "connected");
                // What waited for this connection (held, or the batch that asked for the
                // dial) leaves now, but for writes whose callers' deadlines passed meanwhile.
                // (Batches queued during the dial, within its 5 s budget, are not looked at.)
                let own = raft_id(&shared.name);
                let overdue = drop_overdue(&mut first, own, std::time::Instant::now());
                if overdue > 0 {
                    tracing::debug!(%peer, overdue, "dropped forwarded writes held past their deadline");
                }
                let stats = &shared.stats;
                stats.connections_opened.fetch_add(1, Ordering::Relaxed);
                stats.connections_open.fetch_add(1, Ordering::Relaxed);
                let pumped = pump(link, first, &mut queues, &mut url, &shared, &peer, &slot).await;
                stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                match pumped {
                    // Idle for good, or a new URL: wait for the next message.
                    Ok(()) => continue,
                    Err(reason) => {
                        tracing::debug!(%peer, "connection lost: {reason}");
                        // Is the peer still there? A refused dial says at once that it is not.
                        probes = PROBE_DIALS;
                        continue;
                    }
                }
            }
            Err(DialFailure { reason, refused }) => {
                held.keep(first, &shared, &peer);
                if refused {
                    let _ = shared.reports.send(Delivery::Gone(raft_id(&peer)));
                }
                tracing::debug!(%peer, url = %target, "dial failed: {reason}")
            }
        }
        // Wait before the next dial, discarding stale messages but for forwarded requests;
        // a new URL dials at once. A probe's dials come closer together.
        let pause = match probes {
            0 => delays.next().unwrap_or(Duration::from_secs(2)),
            left => PROBE_PAUSES[PROBE_DIALS - 1 - left],
        };
        let pause = tokio::time::sleep(pause);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                changed = url.changed() => if changed.is_ok() { break } else { return },
                batch = queues.recv() => match batch {
                    Some(batch) => held.keep(batch, &shared, &peer),
                    None => return,
                },
            }
        }
    }
}

/// Most bytes of forwarded requests held for a peer while it cannot be reached.
const MAX_HELD_BYTES: usize = 64 << 20;

/// Forwarded writes and reads that never left this node while its peer could not be reached:
/// they go out on the next connection. The raft crate never sends a proposal again, so a
/// forwarded write dropped here waited for its whole deadline, though a dial a moment later
/// would have carried it (the rest, raft sends again by itself). Never written, so never
/// delivered twice; and never after the caller's deadline (see
/// [`crate::peer_messages::with_deadline`]: dropped when the connection comes).
#[derive(Default)]
struct Held {
    messages: Vec<Message>,
    bytes: usize,
}

impl Held {
    /// Keeps the forwarded requests of `batch` (within [`MAX_HELD_BYTES`]) and reports the
    /// rest dropped.
    fn keep(&mut self, batch: Vec<Message>, shared: &Shared, peer: &str) {
        use prost::Message as _;
        let mut dropped = Vec::new();
        for m in batch {
            let size = m.encoded_len();
            if crate::peer_messages::is_forwarded_request(&m) && self.bytes + size <= MAX_HELD_BYTES
            {
                self.bytes += size;
                self.messages.push(m);
            } else {
                dropped.push(m);
            }
        }
        if !dropped.is_empty() {
            super::report_dropped(&shared.reports, raft_id(peer), &dropped);
        }
    }

    fn take(&mut self) -> Vec<Message> {
        self.bytes = 0;
        std::mem::take(&mut self.messages)
    }
}

/// A connection past its handshake, with its keys when the cluster has a secret.
struct Link {
    ws: PeerSocket,
    keys: Option<SessionKeys>,
}

/// Connects and performs the handshake.
async fn dial(shared: &Shared, peer: &str, url: &str) -> Result<Link, DialFailure> {
    let (host, port) = crate::config::parse_ws_url(url)?;
    // One budget for the connection and the handshake.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let connect = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port));
    let tcp = match tokio::time::timeout_at(deadline, connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(DialFailure {
                refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
                reason: e.to_string(),
            })
        }
        Err(_) => return Err("connect timed out".to_string().into()),
    };
    let attempt = async {
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn super::Io> = match &shared.tls {
            Some(tls) => tls.connect(&host, tcp).await?,
            None => Box::new(tcp),
        };
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, io, Some(ws_handshake_config()))
                .await
                .map_err(|e| e.to_string())?;
        let dialer_nonce = auth::nonce();
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: shared.cluster_id.clone(),
            from: shared.name.clone(),
            to: peer.to_string(),
            nonce: ByteBuf::from(dialer_nonce.clone()),
            http_url: shared.http_url.clone(),
        };
        ws.send(WsMessage::Binary(hello.encode().into()))
            .await
            .map_err(|e| e.to_string())?;
        match (answer(shared, peer, &mut ws, None).await?, &shared.secret) {
            (Frame::Welcome { version }, None) => {
                check_welcome(version)?;
                Ok(Link { ws, keys: None })
            }
            (Frame::Welcome { .. }, Some(_)) => {
                Err("the peer did not prove the cluster secret (has it none?)".into())
            }
            (Frame::Challenge { .. }, None) => {
                Err("the peer requires a secret and this node has none".into())
            }
            (Frame::Challenge { nonce, proof }, Some(secret)) => {
                let transcript = Transcript {
                    cluster_id: &shared.cluster_id,
                    dialer: &shared.name,
                    listener: peer,
                    dialer_nonce: &dialer_nonce,
                    listener_nonce: &nonce,
                    dialer_http_url: &shared.http_url,
                };
                if nonce.len() != auth::NONCE_BYTES
                    || !transcript.verify(secret, Side::Listener, &proof)
                {
                    return Err("the peer failed to prove the cluster secret".into());
                }
                let mine = Frame::Proof {
                    proof: ByteBuf::from(transcript.prove(secret, Side::Dialer)),
                };
                ws.send(WsMessage::Binary(mine.encode().into()))
                    .await
                    .map_err(|e| e.to_string())?;
                // From here on the listener seals what it sends.
                let mut keys = SessionKeys::derive(secret, &transcript);
                match answer(shared, peer, &mut ws, Some(&mut keys.listener)).await? {
                    Frame::Welcome { version } => {
                        check_welcome(version)?;
                        Ok(Link {
                            ws,
                            keys: Some(keys),
                        })
                    }
                    _ => Err("unexpected handshake answer".to_string()),
                }
            }
            _ => Err("unexpected handshake answer".to_string()),
        }
    };
    let link = tokio::time::timeout_at(deadline, attempt)
        .await
        .map_err(|_| "handshake timed out".to_string())?;
    Ok(link?)
}

/// The listener's next handshake frame, or why there is none. `seal`: the listener proved
/// the secret, and seals what it sends from here on.
async fn answer(
    shared: &Shared,
    peer: &str,
    ws: &mut PeerSocket,
    seal: Option<&mut Sealer>,
) -> Result<Frame, String> {
    let frame = match (ws.next().await, seal) {
        (Some(Ok(WsMessage::Binary(bytes))), None) => Frame::decode(&bytes)?,
        (Some(Ok(WsMessage::Binary(bytes))), Some(seal)) => {
            Frame::decode(&seal.open(bytes.into())?)?
        }
        (Some(Ok(WsMessage::Close(Some(close)))), _) => {
            tracing::warn!(%peer, "peer refused us: {}", close.reason);
            // Without a secret, nothing is authenticated anyway; with one, only a sealed
            // refusal counts (an on-path relay forged this close in place of a Challenge,
            // and the member believed it was removed).
            if shared.secret.is_none() {
                report_refusal(shared, peer, &close.reason);
            }
            return Err(format!("refused: {}", close.reason));
        }
        (Some(Ok(_)) | None, _) => return Err("closed during the handshake".to_string()),
        (Some(Err(e)), _) => return Err(e.to_string()),
    };
    match frame {
        Frame::Refused { reason } => {
            tracing::warn!(%peer, "peer refused us: {reason}");
            report_refusal(shared, peer, &reason);
            Err(format!("refused: {reason}"))
        }
        frame => Ok(frame),
    }
}

/// Acts on a peer's reason for refusing us (one we may believe): told that we are no
/// member, the driver learns it (a leader's word means this node was removed).
fn report_refusal(shared: &Shared, peer: &str, reason: &str) {
    if reason.contains(crate::peer_messages::NOT_A_MEMBER) {
        let _ = shared.reports.send(Delivery::NotAMember(raft_id(peer)));
    }
}

/// What woke a writer task that had lent its write half.
enum Woke {
    Batch(Option<Vec<Message>>),
    /// A direct write left bytes to flush, or failed.
    Driver,
    /// Quiet for a while: a keep-alive ping is due (unless the driver wrote).
    Quiet,
    Incoming(Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>),
    UrlChanged,
}

/// Writes queued batches, packing whatever is waiting into as few frames as possible,
/// until the connection fails or the peer's URL changes. Light messages go first, also
/// between the frames of a large bulk batch. While nothing waits, the write half is lent to
/// the driver (see [`super::direct`]); whatever happens, the loan ends with the connection.
async fn pump(
    link: Link,
    first: Vec<Message>,
    queues: &mut Queues,
    url: &mut watch::Receiver<String>,
    shared: &Shared,
    peer: &str,
    slot: &DirectSlot,
) -> Result<(), String> {
    let _loan_ends = slot.ends_with_connection();
    let (sink, mut stream) = link.ws.split();
    let (seal, mut open) = match link.keys {
        Some(SessionKeys { dialer, listener }) => (Some(dialer), Some(listener)),
        None => (None, None),
    };
    let mut writer = Writer { sink, seal };
    let mut first = Some(first);
    let mut sent = Quiet::new(shared.idle_timeout / 4);
    loop {
        let mut batch = if let Some(first) = first.take() {
            first
        } else {
            let woke = match slot.lend(writer, || queues.try_next()) {
                Err((kept, batch)) => {
                    writer = kept;
                    Woke::Batch(Some(batch))
                }
                // In this order: what waits to be sent is looked at first, and the rest
                // (each poll of the read half costs a read attempt) only when nothing does.
                Ok(()) => {
                    let woke = tokio::select! {
                        biased;
                        batch = queues.recv() => Woke::Batch(batch),
                        () = slot.woken() => Woke::Driver,
                        () = sent.elapsed() => Woke::Quiet,
                        incoming = stream.next() => Woke::Incoming(incoming),
                        _ = url.changed() => Woke::UrlChanged,
                    };
                    let back = slot.take_back()?;
                    writer = back.writer;
                    if back.wrote {
                        sent.heard();
                    }
                    if back.unflushed {
                        writer.sink.flush().await.map_err(|e| e.to_string())?;
                    }
                    woke
                }
            };
            match woke {
                Woke::Batch(Some(batch)) => batch,
                Woke::Batch(None) | Woke::UrlChanged => return Ok(()),
                Woke::Driver => continue,
                // Nothing sent for a while: a ping keeps the listener from closing us as idle.
                Woke::Quiet => {
                    if sent.is_quiet() {
                        writer
                            .sink
                            .send(WsMessage::Ping(Vec::new().into()))
                            .await
                            .map_err(|e| e.to_string())?;
                        sent.heard();
                    }
                    continue;
                }
                // The listener sends nothing after the handshake but the pongs to our pings
                // and, before it closes, why.
                Woke::Incoming(incoming) => match incoming {
                    Some(Ok(WsMessage::Pong(_) | WsMessage::Ping(_))) => continue,
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        let reason = match open.as_mut() {
                            Some(open) => {
                                match open.open(bytes.into()).and_then(|b| Frame::decode(&b)) {
                                    Ok(Frame::Refused { reason }) => {
                                        report_refusal(shared, peer, &reason);
                                        reason
                                    }
                                    Ok(_) => "an unexpected frame".to_string(),
                                    Err(e) => e,
                                }
                            }
                            None => "an unexpected frame".to_string(),
                        };
                        return Err(format!("closed by peer: {reason}"));
                    }
                    Some(Ok(WsMessage::Close(Some(close)))) => {
                        // With a secret, the sealed refusal before it is what counts.
                        if open.is_none() {
                            report_refusal(shared, peer, &close.reason);
                        }
                        return Err(format!("closed by peer: {}", close.reason));
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    _ => return Err("closed by peer".to_string()),
                },
            }
        };
        queues.take_more_like(&mut batch);
        if batch.is_empty() {
            continue; // a probe's connection, with nothing to send yet
        }
        sent.heard();
        let mut frames = crate::transport::wire::Frames::new(&batch);
        let mut counted = 0;
        while let Some(frame) = frames.next() {
            writer.write(frame, shared, &batch).await?;
            // A message cut into chunks counts once its first chunk is out: counted after
            // the whole batch, it showed up after the peer had received and applied it (or
            // never, when the connection failed after its last chunk).
            shared
                .stats
                .chunked_messages
                .fetch_add(frames.chunked - counted, Ordering::Relaxed);
            counted = frames.chunked;
            // Encoding a frame of megabytes takes a while: let the drivers sharing this
            // thread tick between frames, and let heartbeats overtake the rest of the batch.
            // (Not after the last: a yield costs the worker a poll of the I/O driver, a
            // syscall on the path of every write.)
            if !frames.is_done() {
                tokio::task::yield_now().await;
            }
            while let Some(light) = queues.waiting_light() {
                for frame in crate::transport::wire::Frames::new(&light) {
                    writer.write(frame, shared, &light).await?;
                }
            }
        }
        let to = batch.first().map_or(0, |m| m.to);
        super::report_snapshots(&shared.reports, to, &batch, true);
    }
}
