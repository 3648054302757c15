//! Hostile input on the transport: each case opens its own WebSocket to a cluster member and
//! sends something a correct peer never would. The member must close that connection (logging
//! the reason), never panic, and the cluster must keep serving writes.

mod common;

use std::time::Duration;

use common::{fast, Cluster};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use raft::eraftpb::{Entry, Message, MessageType};
use raftline::ids::raft_id;
use raftline::wire::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use raftline::{Consistency, Role, WriteOptions};
use serde_bytes::ByteBuf;
use tokio_tungstenite::tungstenite::Message as Ws;

/// What a case sends after the WebSocket upgrade.
enum Attack {
    /// These binary messages, no handshake first.
    Raw(Vec<Vec<u8>>),
    /// A handshake with these fields, then nothing.
    Hello {
        cluster_id: &'static str,
        from: &'static str,
        to_target: bool,
    },
    /// A valid handshake claiming to be `from`, then these frames.
    AfterHello {
        from: &'static str,
        frames: Vec<Vec<u8>>,
    },
}

fn hello(cluster_id: &str, from: &str, to: &str) -> Vec<u8> {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster_id.into(),
        from: from.into(),
        to: to.into(),
        nonce: ByteBuf::from(vec![9; 32]),
    }
    .encode()
}

fn raft_frame(messages: Vec<Message>) -> Vec<u8> {
    Frame::raft(&messages).encode()
}

fn message(kind: MessageType, from: &str, to: &str, tweak: impl FnOnce(&mut Message)) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = raft_id(from);
    m.to = raft_id(to);
    tweak(&mut m);
    m
}

/// Random-looking bytes from a fixed seed (a small LCG keeps the test deterministic).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect()
}

/// Sends the attack to `target` and reports how the connection ended within 10 s.
async fn attack(url: &str, target: &str, peer: &str, attack: Attack) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let frames = match attack {
        Attack::Raw(frames) => frames,
        Attack::Hello {
            cluster_id,
            from,
            to_target,
        } => {
            vec![hello(
                cluster_id,
                from,
                if to_target { target } else { "nobody" },
            )]
        }
        Attack::AfterHello { from, frames } => {
            ws.send(Ws::Binary(hello("raftline", from, target).into()))
                .await
                .unwrap();
            match ws.next().await {
                Some(Ok(Ws::Binary(b))) => {
                    assert!(matches!(Frame::decode(&b), Ok(Frame::Welcome { .. })))
                }
                other => panic!("handshake as {from} (peer {peer}) failed: {other:?}"),
            }
            frames
        }
    };
    for f in frames {
        if ws.send(Ws::Binary(f.into())).await.is_err() {
            return "closed while sending".into();
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Close(frame))) => {
                    return format!(
                        "closed: {}",
                        frame.map(|f| f.reason.to_string()).unwrap_or_default()
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return format!("error: {e}"),
                None => return "eof".into(),
            }
        }
    })
    .await;
    ended.unwrap_or_else(|_| "still open".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_the_connection_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    cluster
        .node(&leader)
        .set("seed", b"1".to_vec(), WriteOptions::default())
        .await
        .unwrap();
    // Attack a follower, claiming to be the other follower (or the leader where it matters).
    let target = cluster
        .names
        .iter()
        .find(|n| **n != leader)
        .unwrap()
        .clone();
    let other = cluster
        .names
        .iter()
        .find(|n| **n != leader && **n != target)
        .unwrap()
        .clone();
    let (t, o, l) = (target.as_str(), other.as_str(), leader.as_str());
    let committed = cluster.node(t).status().commit_index;
    let valid = raft_frame(vec![message(MessageType::MsgHeartbeat, l, t, |m| {
        m.term = 1
    })]);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (o, l) = (leak(o.to_string()), leak(l.to_string()));

    // (case, attack, what the close reason must say)
    let cases: Vec<(&str, Attack, &str)> = vec![
        (
            "random bytes as the first frame",
            Attack::Raw(vec![noise(300, 1)]),
            "malformed frame",
        ),
        (
            "random bytes after the handshake",
            Attack::AfterHello {
                from: o,
                frames: vec![noise(1000, 2)],
            },
            "malformed frame",
        ),
        (
            "oversized frame",
            Attack::AfterHello {
                from: o,
                frames: vec![vec![0x90; MAX_FRAME_BYTES + 1]],
            },
            "closed",
        ),
        (
            "truncated MessagePack frame",
            Attack::AfterHello {
                from: o,
                frames: vec![valid[..valid.len() / 2].to_vec()],
            },
            "malformed frame",
        ),
        (
            "wrong cluster id",
            Attack::Hello {
                cluster_id: "other-cluster",
                from: o,
                to_target: true,
            },
            "wrong cluster id",
        ),
        (
            "wrong receiver name",
            Attack::Hello {
                cluster_id: "raftline",
                from: o,
                to_target: false,
            },
            "wrong receiver",
        ),
        (
            "undecodable raft message in a valid envelope",
            Attack::AfterHello {
                from: o,
                frames: vec![Frame::Raft {
                    messages: vec![ByteBuf::from(vec![0xff; 16])],
                }
                .encode()],
            },
            "malformed raft message",
        ),
        (
            "chunked message that decodes to garbage",
            Attack::AfterHello {
                from: o,
                frames: vec![
                    Frame::Chunk {
                        bytes: ByteBuf::from(vec![0xff; 1000]),
                        last: false,
                    }
                    .encode(),
                    Frame::Chunk {
                        bytes: ByteBuf::from(vec![0xff; 1000]),
                        last: true,
                    }
                    .encode(),
                ],
            },
            "malformed raft message",
        ),
        (
            "raft message claiming another sender",
            Attack::AfterHello {
                from: o,
                frames: vec![raft_frame(vec![message(
                    MessageType::MsgHeartbeat,
                    l,
                    t,
                    |m| m.term = 1,
                )])],
            },
            "claims sender",
        ),
        (
            "empty proposal",
            Attack::AfterHello {
                from: o,
                frames: vec![raft_frame(vec![message(
                    MessageType::MsgPropose,
                    o,
                    t,
                    |_| {},
                )])],
            },
            "empty proposal",
        ),
        (
            "append rewriting a committed entry",
            Attack::AfterHello {
                from: l,
                frames: vec![raft_frame(vec![message(
                    MessageType::MsgAppend,
                    l,
                    t,
                    |m| {
                        m.term = 1_000;
                        m.index = 0;
                        m.log_term = 0;
                        m.entries = vec![Entry {
                            index: 1,
                            term: 999,
                            ..Default::default()
                        }];
                        m.commit = committed;
                    },
                )])],
            },
            "rewrites committed entry",
        ),
        (
            "vote request without a term",
            Attack::AfterHello {
                from: o,
                frames: vec![raft_frame(vec![message(
                    MessageType::MsgRequestVote,
                    o,
                    t,
                    |_| {},
                )])],
            },
            "without a term",
        ),
        (
            "local message type from the wire",
            Attack::AfterHello {
                from: o,
                frames: vec![raft_frame(vec![message(MessageType::MsgHup, o, t, |_| {})])],
            },
            "is local",
        ),
        (
            "unknown message type",
            Attack::AfterHello {
                from: o,
                frames: vec![raft_frame(vec![message(
                    MessageType::MsgHeartbeat,
                    o,
                    t,
                    |m| m.msg_type = 99,
                )])],
            },
            "unknown message type",
        ),
        (
            "read index without its context",
            Attack::AfterHello {
                from: o,
                frames: vec![raft_frame(vec![message(
                    MessageType::MsgReadIndex,
                    o,
                    t,
                    |_| {},
                )])],
            },
            "exactly one entry",
        ),
    ];

    let url = cluster.node(t).url().to_string();
    for (case, attack_kind, expected) in cases {
        let ended = attack(&url, t, o, attack_kind).await;
        assert!(
            ended.contains(expected),
            "{case}: connection must be closed with {expected:?}, got {ended:?}"
        );
        // The cluster still has its leader, nobody failed, and writes go through.
        let status = cluster.node(t).status();
        assert_ne!(status.role, Role::Stopped, "{case}: target stopped");
        cluster.assert_safe();
        cluster
            .node(t)
            .set("after", case.as_bytes().to_vec(), WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{case}: write after the attack failed: {e}"));
    }
    // The corrupt raft message was never stepped: the target's log agrees with the leader's.
    let seen = cluster
        .node(t)
        .get("seed", Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(seen, Some(b"1".to_vec()));
    cluster.wait_converged().await;
    cluster.stop().await;
}

#[test]
fn encoded_raft_messages_decode_back() {
    let m = message(MessageType::MsgAppend, "a", "b", |m| {
        m.entries = vec![Entry::default()]
    });
    assert_eq!(Message::decode(m.encode_to_vec().as_slice()).unwrap(), m);
}
