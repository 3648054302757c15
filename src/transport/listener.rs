//! Inbound side: accepts peers, checks their handshake, and hands their raft messages to the
//! driver. Anything malformed closes that one connection with a logged reason.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::auth::{self, Side, Transcript};
use super::quiet::Quiet;
use super::registry::Claim;
use super::seal::{Sealer, SessionKeys};
use super::{
    close_with_reason, ws_config, ws_handshake_config, Inbound, InboundQueues, Io, Shared,
    HANDSHAKE_TIMEOUT,
};
use crate::ids::raft_id;
use raft::eraftpb::MessageType;
use rustls::pki_types::CertificateDer;
use std::sync::atomic::Ordering;
use tokio_tungstenite::tungstenite::protocol::Role;

use serde_bytes::ByteBuf;

use crate::transport::wire::{
    check_hello, decode_raft_message, Frame, Hello, Received, MAX_MESSAGES_PER_FRAME,
    MAX_MESSAGE_BYTES,
};

/// Accepts connections until the task is aborted; connection tasks die with it.
pub(super) async fn run(shared: Arc<Shared>, listener: TcpListener, inbound: InboundQueues) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(crate::logging::inherit(serve(
                        Arc::clone(&shared),
                        tcp,
                        addr,
                        inbound.clone(),
                    )));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Serves one inbound connection: handshake, then raft frames until it closes.
async fn serve(shared: Arc<Shared>, tcp: TcpStream, addr: SocketAddr, inbound: InboundQueues) {
    let refused = |reason: &str| {
        if shared.refusals.should_log(&addr.ip().to_string()) {
            tracing::warn!(%addr, "refused peer: {reason} (logged once a minute per address)");
        } else {
            tracing::debug!(%addr, "refused peer: {reason}");
        }
    };
    let (admission, evicted_another) = shared.registry.admit(addr.ip());
    if evicted_another && shared.refusals.should_log("handshakes at capacity") {
        tracing::warn!(
            %addr,
            "connections in their handshake at capacity: the oldest gives way (logged once a minute)"
        );
    }
    let upgrade = async {
        let (io, cert): (Box<dyn Io>, _) = match &shared.tls {
            Some(tls) => {
                let (io, cert) = tls.accept(tcp).await.map_err(Refusal::from)?;
                (io, Some(cert))
            }
            None => (Box::new(tcp), None),
        };
        let ws = tokio_tungstenite::accept_async_with_config(io, Some(ws_handshake_config()))
            .await
            .map_err(|e| Refusal {
                reason: format!("not a WebSocket upgrade: {e}"),
                seal: None,
                dialer_left: dialer_left(&e),
            })?;
        Ok::<_, Refusal>((ws, cert))
    };
    // One time budget for the upgrade and the handshake: a connection that has not proven
    // itself within it gives its slot back.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    const EVICTED: &str = "a newer connection took this one's place in the handshake";
    let (mut ws, cert) = tokio::select! {
        upgraded = tokio::time::timeout_at(deadline, upgrade) => match upgraded {
            Ok(Ok(upgraded)) => upgraded,
            Ok(Err(Refusal { reason, dialer_left: true, .. })) => {
                return tracing::debug!(%addr, "the dialer left during the upgrade: {reason}")
            }
            Ok(Err(Refusal { reason, .. })) => return refused(&reason),
            Err(_) => return refused("upgrade timed out"),
        },
        _ = admission.evicted() => return tracing::debug!(%addr, "{EVICTED}"),
    };
    let handshake = tokio::select! {
        done = tokio::time::timeout_at(deadline, handshake(&shared, &mut ws, cert)) => {
            done.unwrap_or_else(|_| Err("no handshake within the time limit".to_string().into()))
        }
        _ = admission.evicted() => Err(EVICTED.to_string().into()),
    };
    let (from, claim, mut keys) = match handshake {
        Ok(accepted) => accepted,
        Err(Refusal {
            reason,
            mut seal,
            dialer_left,
        }) => {
            if dialer_left {
                tracing::debug!(%addr, "the dialer left during the handshake: {reason}");
            } else if reason != EVICTED {
                refused(&reason);
            }
            refuse(&mut ws, &reason, seal.as_deref_mut()).await;
            return;
        }
    };
    // Proven (or, without a secret, named): its handshake slot goes to the next.
    drop(admission);
    // The dialer waits for the Welcome before it sends more: nothing is buffered yet, and
    // from here on frames as large as raft needs are read.
    let mut ws =
        WebSocketStream::from_raw_socket(ws.into_inner(), Role::Server, Some(ws_config())).await;
    tracing::debug!(peer = %from, %addr, "peer connected");
    let (reject_tx, mut reject_rx) = watch::channel(None::<String>);
    let reject_tx = Arc::new(reject_tx);
    let sender_id = raft_id(&from);
    // A large message arriving in chunks.
    let mut partial: Vec<u8> = Vec::new();
    // The peer has sent on this connection what only a leader sends (heartbeats, appends).
    let mut acts_as_leader = false;
    let mut idle = Quiet::new(shared.idle_timeout);
    let reason = loop {
        // In this order: a verdict on the connection first (a peer that keeps sending must
        // not outrun it), then its frames, then the idle timer.
        let next = tokio::select! {
            biased;
            _ = reject_rx.changed() => {
                break reject_rx.borrow().clone().unwrap_or_default();
            }
            _ = claim.slot.replaced.notified() => break "replaced by a newer connection".into(),
            next = ws.next() => next,
            () = idle.elapsed() => {
                break format!("idle for {} ms", shared.idle_timeout.as_millis());
            }
        };
        idle.heard();
        let bytes = match next {
            Some(Ok(WsMessage::Binary(bytes))) => match &mut keys {
                Some(keys) => match keys.dialer.open(bytes.into()) {
                    Ok(plain) => bytes::Bytes::from(plain),
                    Err(reason) => {
                        shared.stats.frames_refused.fetch_add(1, Ordering::Relaxed);
                        break reason;
                    }
                },
                None => bytes,
            },
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {
                claim.heard();
                continue;
            }
            // The peer closed the connection or went away (stopped, killed, network): not
            // its fault, nothing to answer. Is its node still there?
            Some(Ok(WsMessage::Close(_))) | None => return shared.probe(&from),
            // A frame over the limit: a writer of this version never sends one, so this is a
            // peer of another version or a hostile one. Operators must see it (a follower
            // whose frames are refused never catches up).
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                shared.stats.frames_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    peer = %from,
                    %addr,
                    size,
                    max_size,
                    "refused a frame of {size} bytes (the limit is {max_size}); closing the connection"
                );
                break format!("frame of {size} bytes over the {max_size} byte limit");
            }
            Some(Err(e)) => {
                tracing::debug!(peer = %from, %addr, "connection lost: {e}");
                return shared.probe(&from);
            }
            Some(Ok(WsMessage::Text(_) | WsMessage::Frame(_))) => {
                break "unexpected non-binary message".to_string()
            }
        };
        claim.heard();
        shared
            .stats
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let mut size = bytes.len();
        let messages = match Frame::decode_received(&bytes) {
            Ok(Received::Other(Frame::Chunk { bytes, last })) => {
                // Chunks carry snapshots, which only the leader sends: no one else can make
                // this node buffer a large message. A leader's snapshot may follow its first
                // heartbeat on the connection before the driver has stepped that heartbeat
                // (a restarted follower refused every snapshot so): what the peer sent as
                // leader counts too, and the driver refuses a peer that only claims to lead.
                if shared.leader.load(Ordering::Relaxed) != sender_id && !acts_as_leader {
                    break "chunked messages come only from the leader".to_string();
                }
                if partial.len() + bytes.len() > MAX_MESSAGE_BYTES {
                    break format!("chunked message over {MAX_MESSAGE_BYTES} bytes");
                }
                partial.extend_from_slice(&bytes);
                if !last {
                    continue;
                }
                size = partial.len();
                match decode_from(&std::mem::take(&mut partial), sender_id) {
                    Ok(message) => vec![message],
                    Err(reason) => break reason,
                }
            }
            Ok(Received::Raft(messages)) if messages.len() > MAX_MESSAGES_PER_FRAME => {
                shared.stats.frames_refused.fetch_add(1, Ordering::Relaxed);
                let count = messages.len();
                tracing::warn!(
                    peer = %from,
                    %addr,
                    count,
                    "refused a frame of {count} messages (the limit is {MAX_MESSAGES_PER_FRAME}); closing the connection"
                );
                break format!("{count} messages in one frame");
            }
            Ok(Received::Raft(messages)) => match decode_raft_frame(&messages, sender_id) {
                Ok(messages) => {
                    // (The raw type: `get_msg_type` panics on a value no variant has.)
                    acts_as_leader |= messages.iter().any(|m| {
                        m.msg_type == MessageType::MsgHeartbeat as i32
                            || m.msg_type == MessageType::MsgAppend as i32
                    });
                    messages
                }
                Err(reason) => break reason,
            },
            Ok(_) => break "expected a raft frame".to_string(),
            Err(reason) => break reason,
        };
        if messages.is_empty() || shared.faults.is_blocked(&from) {
            continue;
        }
        let frame = Inbound {
            from: from.clone(),
            messages,
            bytes: size,
            reject: Arc::clone(&reject_tx),
        };
        if inbound.send(frame).await.is_err() {
            return; // the node is stopping
        }
    };
    if shared
        .refusals
        .should_log(&format!("{from} at {}", addr.ip()))
    {
        tracing::warn!(peer = %from, %addr, "closed connection: {reason} (logged once a minute per peer)");
    } else {
        tracing::debug!(peer = %from, %addr, "closed connection: {reason}");
    }
    // The member may connect again while this connection drains its close.
    drop(claim);
    refuse(&mut ws, &reason, keys.as_mut().map(|k| &mut k.listener)).await;
}

/// Why the handshake refused a dialer, and (once the dialer proved the secret) the seal its
/// refusal travels under: a dialer believes only a sealed refusal that it is no member.
struct Refusal {
    reason: String,
    /// Boxed: a key schedule is hundreds of bytes, and most refusals have none.
    seal: Option<Box<Sealer>>,
    /// The dialer closed or reset its connection: nothing it sent was wrong (a member
    /// stopping or redialling mid-handshake, a port probe), so nothing is logged above debug.
    dialer_left: bool,
}

/// True when `e` says the dialer went away rather than sent something wrong.
fn dialer_left(e: &WsError) -> bool {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => true,
        WsError::Protocol(
            ProtocolError::HandshakeIncomplete | ProtocolError::ResetWithoutClosingHandshake,
        ) => true,
        WsError::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal {
            reason,
            seal: None,
            dialer_left: false,
        }
    }
}

/// Closes with `reason` as the peer may read it: without numbers (terms, indexes and ids
/// stay in this node's log). Under a seal, a sealed [`Frame::Refused`] goes first: the close
/// frame itself is not authenticated.
async fn refuse(ws: &mut WebSocketStream<Box<dyn Io>>, reason: &str, seal: Option<&mut Sealer>) {
    let reason = for_peer(reason);
    if let Some(seal) = seal {
        let refused = Frame::Refused {
            reason: reason.clone(),
        };
        let _ = ws
            .send(WsMessage::Binary(seal.seal(refused.encode()).into()))
            .await;
    }
    close_with_reason(ws, &reason).await;
}

/// `reason` with every run of digits replaced by `#`: the peer learns what it did wrong,
/// not this node's term, its leader or its log.
fn for_peer(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

/// The next handshake frame from the dialer (the caller bounds the time).
async fn next_frame(ws: &mut WebSocketStream<Box<dyn Io>>) -> Result<Frame, Refusal> {
    let left = |reason: String| Refusal {
        reason,
        seal: None,
        dialer_left: true,
    };
    match ws.next().await {
        Some(Ok(WsMessage::Binary(bytes))) => Ok(Frame::decode(&bytes)?),
        Some(Ok(WsMessage::Close(_))) | None => Err(left("closed before the handshake".into())),
        Some(Ok(_)) => Err("handshake must be a binary frame".to_string().into()),
        Some(Err(e)) if dialer_left(&e) => Err(left(format!("read failed: {e}"))),
        Some(Err(e)) => Err(format!("read failed: {e}").into()),
    }
}

/// Reads and checks the dialer's Hello, makes it prove the secret (if the cluster has one,
/// proving it too), admits members only, one connection each, and answers Welcome; returns
/// the dialer's name, its hold on that name and, with a secret, the connection's keys (the
/// Welcome and every later frame are sealed). Refusals before the proof never name this
/// node: the dialer is not authenticated yet.
async fn handshake<'a>(
    shared: &'a Shared,
    ws: &mut WebSocketStream<Box<dyn Io>>,
    cert: Option<CertificateDer<'static>>,
) -> Result<(String, Claim<'a>, Option<SessionKeys>), Refusal> {
    let Hello {
        version,
        from,
        nonce,
        http_url,
    } = check_hello(next_frame(ws).await?, &shared.cluster_id, &shared.name)?;
    if let Some(cert) = &cert {
        // One member's certificate cannot speak for another.
        let url_host = shared
            .peer_url(&from)
            .and_then(|url| crate::config::parse_ws_url(&url).ok())
            .map(|(host, _)| host);
        if !super::tls::names_member(cert, &from, url_host.as_deref()) {
            return Err(format!(
                "the TLS certificate names neither {from} nor the host of its peer URL"
            )
            .into());
        }
    }
    let mut keys = None;
    if let Some(secret) = &shared.secret {
        let listener_nonce = auth::nonce();
        let transcript = Transcript {
            cluster_id: &shared.cluster_id,
            dialer: &from,
            listener: &shared.name,
            dialer_nonce: &nonce,
            listener_nonce: &listener_nonce,
            dialer_http_url: &http_url,
        };
        let challenge = Frame::Challenge {
            proof: ByteBuf::from(transcript.prove(secret, Side::Listener)),
            nonce: ByteBuf::from(listener_nonce.clone()),
        };
        ws.send(WsMessage::Binary(challenge.encode().into()))
            .await
            .map_err(|e| format!("cannot answer the handshake: {e}"))?;
        let Frame::Proof { proof } = next_frame(ws).await? else {
            return Err("authentication failed: expected a proof of the secret"
                .to_string()
                .into());
        };
        if !transcript.verify(secret, Side::Dialer, &proof) {
            return Err("authentication failed".to_string().into());
        }
        keys = Some(SessionKeys::derive(secret, &transcript));
    }
    // Membership after authentication: only a proven peer learns that it is no member.
    let refusal = |reason: String, keys: Option<SessionKeys>| Refusal {
        reason,
        seal: keys.map(|k| Box::new(k.listener)),
        dialer_left: false,
    };
    let id = raft_id(&from);
    if !shared.registry.is_member(id) {
        return Err(refusal(crate::peer_messages::NOT_A_MEMBER.into(), keys));
    }
    let claim = match shared.registry.claim(id) {
        Ok(claim) => claim,
        Err(reason) => return Err(refusal(reason, keys)),
    };
    // The version both speak (the dialer's, or this node's newest when the dialer's is newer).
    let welcome = Frame::Welcome { version }.encode();
    let welcome = match &mut keys {
        Some(keys) => keys.listener.seal(welcome),
        None => welcome,
    };
    ws.send(WsMessage::Binary(welcome.into()))
        .await
        .map_err(|e| format!("cannot answer the handshake: {e}"))?;
    shared.learn_http_url(&from, http_url);
    Ok((from, claim, keys))
}

/// Decodes the messages of a raft frame from the peer whose raft id is `sender_id`.
fn decode_raft_frame(
    messages: &[&[u8]],
    sender_id: u64,
) -> Result<Vec<raft::eraftpb::Message>, String> {
    messages
        .iter()
        .map(|bytes| decode_from(bytes, sender_id))
        .collect()
}

/// Decodes one raft message, which must come from `sender_id`.
fn decode_from(bytes: &[u8], sender_id: u64) -> Result<raft::eraftpb::Message, String> {
    let m = decode_raft_message(bytes)?;
    if m.from != sender_id {
        return Err(format!(
            "message claims sender {} on another peer's connection",
            m.from
        ));
    }
    Ok(m)
}
