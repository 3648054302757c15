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
use crate::ids::raft_id;
use crate::wire::{Frame, MAX_MESSAGES_PER_FRAME, PROTOCOL_VERSION};

type PeerSocket = tokio_tungstenite::WebSocketStream<Box<dyn super::Io>>;

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

    /// Light messages waiting now, if any.
    fn waiting_light(&mut self) -> Option<Vec<Message>> {
        let mut batch = self.light.try_recv().ok()?;
        self.take_more_like(&mut batch);
        Some(batch)
    }
}

/// Runs until aborted: wait for something to send, dial, write, redial. A node dials a peer
/// only once it has something for it: a joining node, which members refuse until they
/// have added it, first hears from the leader and then answers.
pub(super) async fn run(
    shared: Arc<Shared>,
    peer: String,
    mut url: watch::Receiver<String>,
    mut queues: Queues,
) {
    let mut delays = backoff();
    loop {
        let first = tokio::select! {
            batch = queues.recv() => match batch {
                Some(batch) => batch,
                None => return,
            },
            changed = url.changed() => if changed.is_ok() { continue } else { return },
        };
        let target = url.borrow_and_update().clone();
        let outcome = if target.is_empty() {
            Err("no address known".to_string())
        } else {
            dial(&shared, &peer, &target).await
        };
        match outcome {
            Ok(ws) => {
                delays = backoff();
                tracing::debug!(%peer, "connected");
                let stats = &shared.stats;
                stats.connections_opened.fetch_add(1, Ordering::Relaxed);
                stats.connections_open.fetch_add(1, Ordering::Relaxed);
                let pumped = pump(ws, first, &mut queues, &mut url, &shared, &peer).await;
                stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                match pumped {
                    // Idle for good, or a new URL: wait for the next message.
                    Ok(()) => continue,
                    Err(reason) => {
                        tracing::debug!(%peer, "connection lost: {reason}")
                    }
                }
            }
            Err(reason) => {
                super::report_dropped(&shared.reports, raft_id(&peer), &first);
                tracing::debug!(%peer, url = %target, "dial failed: {reason}")
            }
        }
        // Wait before the next dial, discarding stale messages; a new URL dials at once.
        let pause = tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2)));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                changed = url.changed() => if changed.is_ok() { break } else { return },
                batch = queues.recv() => match batch {
                    Some(batch) => super::report_dropped(&shared.reports, raft_id(&peer), &batch),
                    None => return,
                },
            }
        }
    }
}

/// Connects and performs the handshake.
async fn dial(shared: &Shared, peer: &str, url: &str) -> Result<PeerSocket, String> {
    let attempt = async {
        let (host, port) = crate::config::parse_ws_url(url)?;
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| e.to_string())?;
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
        match (answer(shared, peer, &mut ws).await?, &shared.secret) {
            (Frame::Welcome { .. }, None) => Ok(ws),
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
                match answer(shared, peer, &mut ws).await? {
                    Frame::Welcome { .. } => Ok(ws),
                    _ => Err("unexpected handshake answer".to_string()),
                }
            }
            _ => Err("unexpected handshake answer".to_string()),
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .map_err(|_| "handshake timed out".to_string())?
}

/// The listener's next handshake frame, or why there is none.
async fn answer(shared: &Shared, peer: &str, ws: &mut PeerSocket) -> Result<Frame, String> {
    match ws.next().await {
        Some(Ok(WsMessage::Binary(bytes))) => Frame::decode(&bytes),
        Some(Ok(WsMessage::Close(Some(close)))) => {
            tracing::warn!(%peer, "peer refused us: {}", close.reason);
            if close.reason.contains(super::NOT_A_MEMBER) {
                let _ = shared
                    .reports
                    .send(super::Delivery::NotAMember(raft_id(peer)));
            }
            Err(format!("refused: {}", close.reason))
        }
        Some(Ok(_)) | None => Err("closed during the handshake".to_string()),
        Some(Err(e)) => Err(e.to_string()),
    }
}

/// Writes queued batches, packing whatever is waiting into as few frames as possible,
/// until the connection fails or the peer's URL changes. Light messages go first, also
/// between the frames of a large bulk batch.
async fn pump(
    ws: PeerSocket,
    first: Vec<Message>,
    queues: &mut Queues,
    url: &mut watch::Receiver<String>,
    shared: &Shared,
    peer: &str,
) -> Result<(), String> {
    let (mut sink, mut stream) = ws.split();
    let mut first = Some(first);
    loop {
        let mut batch = if let Some(first) = first.take() {
            first
        } else {
            tokio::select! {
                batch = queues.recv() => match batch {
                    Some(batch) => batch,
                    None => return Ok(()),
                },
                // Nothing to send for a while: a ping keeps the listener from closing us as idle.
                _ = tokio::time::sleep(shared.idle_timeout / 4) => {
                    sink.send(WsMessage::Ping(Vec::new().into())).await.map_err(|e| e.to_string())?;
                    continue;
                }
                // The listener sends nothing after the handshake but the pongs to our pings:
                // anything else is a close.
                incoming = stream.next() => match incoming {
                    Some(Ok(WsMessage::Pong(_) | WsMessage::Ping(_))) => continue,
                    Some(Ok(WsMessage::Close(Some(close)))) => {
                        if close.reason.contains(super::NOT_A_MEMBER) {
                            let _ = shared.reports.send(super::Delivery::NotAMember(raft_id(peer)));
                        }
                        return Err(format!("closed by peer: {}", close.reason));
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    _ => return Err("closed by peer".to_string()),
                },
                _ = url.changed() => return Ok(()),
            }
        };
        queues.take_more_like(&mut batch);
        let mut frames = crate::wire::Frames::new(&batch);
        for frame in frames.by_ref() {
            write_frame(&mut sink, frame, shared, &batch).await?;
            // Encoding a frame of megabytes takes a while: let the drivers sharing this
            // thread tick between frames, and let heartbeats overtake the rest of the batch.
            tokio::task::yield_now().await;
            while let Some(light) = queues.waiting_light() {
                for frame in crate::wire::Frames::new(&light) {
                    write_frame(&mut sink, frame, shared, &light).await?;
                }
            }
        }
        let stats = &shared.stats;
        stats
            .chunked_messages
            .fetch_add(frames.chunked, Ordering::Relaxed);
        let to = batch.first().map_or(0, |m| m.to);
        super::report_snapshots(&shared.reports, to, &batch, true);
    }
}

type PeerSink = futures_util::stream::SplitSink<PeerSocket, WsMessage>;

/// Writes one frame of `batch`; on failure the whole batch is reported dropped.
async fn write_frame(
    sink: &mut PeerSink,
    frame: Vec<u8>,
    shared: &Shared,
    batch: &[Message],
) -> Result<(), String> {
    let len = frame.len() as u64;
    if let Err(e) = sink.send(WsMessage::Binary(frame.into())).await {
        let to = batch.first().map_or(0, |m| m.to);
        super::report_dropped(&shared.reports, to, batch);
        return Err(e.to_string());
    }
    shared.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
    Ok(())
}
