//! The hostile-input suite: each case opens its own WebSocket to a member of a running
//! cluster, over real sockets, and sends what an attacker on the same network would. It runs
//! against a cluster without a secret (attacks speak for a member whose connection is not
//! open: a learner that never runs, or for a name that is no member) and against a cluster
//! with one (the attacker does not have it). Afterwards the cluster must be as if nothing
//! had happened: the same leader in the same term, every write acknowledged meanwhile on
//! every member, identical states, no node failed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast, Cluster, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot};
use raftline::config::Secret;
use raftline::ids::raft_id;
use raftline::transport::wire::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use raftline::transport::MAX_HANDSHAKES_PER_ADDRESS;
use raftline::{Config, MembershipChange, WriteOptions};
use serde_bytes::ByteBuf;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message as Ws;

/// A member that never runs: its name is admitted, and no connection of its own holds it.
const GHOST: &str = "ghost";

/// How a case opens its connection.
#[derive(Clone)]
enum Opening {
    /// Straight to these frames, no handshake.
    Raw,
    /// A Hello with these fields (the cluster id, the claimed name, the addressee).
    Hello {
        cluster_id: String,
        from: String,
        to: String,
    },
}

/// One attack: how it opens, what it sends, and how the connection must end: refused with
/// a reason holding `expect`, or (`expect` = None) taken or ignored without harm, which the
/// probe frame sent last shows (it is refused once everything before it was handled).
struct Case {
    name: &'static str,
    opening: Opening,
    frames: Vec<Vec<u8>>,
    expect: Option<&'static str>,
}

/// Sent after an attack that must not close the connection: refused, with this reason
/// (the type is 99: reasons reach the peer with their numbers masked).
const PROBE_REASON: &str = "unknown message type #";

/// What the cluster looks like to an attacker.
struct Scene {
    target: String,
    leader: String,
    term: u64,
    commit: u64,
    last: u64,
}

fn message(kind: MessageType, from: &str, to: &str, tweak: impl FnOnce(&mut Message)) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = raft_id(from);
    m.to = raft_id(to);
    tweak(&mut m);
    m
}

fn raft_frame(messages: Vec<Message>) -> Vec<u8> {
    Frame::raft(&messages).encode()
}

fn probe(from: &str, to: &str) -> Vec<u8> {
    raft_frame(vec![message(MessageType::MsgHeartbeat, from, to, |m| {
        m.msg_type = 99
    })])
}

/// Random-looking bytes from a fixed seed (a small LCG keeps the suite deterministic).
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

fn hello_frame(cluster_id: &str, from: &str, to: &str) -> Vec<u8> {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster_id.into(),
        from: from.into(),
        to: to.into(),
        nonce: ByteBuf::from(vec![9; 32]),
        http_url: String::new(),
    }
    .encode()
}

fn as_member(from: &str, to: &str) -> Opening {
    Opening::Hello {
        cluster_id: "raftline".into(),
        from: from.into(),
        to: to.into(),
    }
}

/// Every attack of the suite against `scene`, speaking for the ghost member where it needs
/// a member's name.
fn cases(s: &Scene) -> Vec<Case> {
    use MessageType::*;
    let (t, l, g) = (s.target.as_str(), s.leader.as_str(), GHOST);
    let term = s.term;
    let at_follower = || as_member(g, t);
    let at_leader = || as_member(g, l);
    let frame = |kind, tweak: &dyn Fn(&mut Message)| raft_frame(vec![message(kind, g, t, tweak)]);
    let to_leader =
        |kind, tweak: &dyn Fn(&mut Message)| raft_frame(vec![message(kind, g, l, tweak)]);
    let mut cases = vec![
        // The handshake.
        Case {
            name: "random bytes instead of a handshake",
            opening: Opening::Raw,
            frames: vec![noise(300, 1)],
            expect: Some("malformed frame"),
        },
        Case {
            name: "a name that is no member",
            opening: as_member("intruder", t),
            frames: vec![],
            expect: Some("not a member"),
        },
        Case {
            name: "the name of the leader, whose connection is open",
            opening: as_member(l, t),
            frames: vec![],
            expect: Some("already connected"),
        },
        Case {
            name: "another cluster",
            opening: Opening::Hello {
                cluster_id: "other-cluster".into(),
                from: g.into(),
                to: t.into(),
            },
            frames: vec![],
            expect: Some("wrong cluster id"),
        },
        Case {
            name: "a guessed receiver name",
            opening: as_member(g, "nobody"),
            frames: vec![],
            expect: Some("wrong receiver"),
        },
        Case {
            name: "an oversized handshake field",
            opening: Opening::Hello {
                cluster_id: "c".repeat(1000),
                from: g.into(),
                to: t.into(),
            },
            frames: vec![],
            expect: Some("oversized handshake field"),
        },
        Case {
            name: "a handshake frame of 1 MiB",
            opening: Opening::Raw,
            frames: vec![vec![0x90; 1 << 20]],
            expect: Some(""),
        },
        // Frames after the handshake.
        Case {
            name: "random bytes after the handshake",
            opening: at_follower(),
            frames: vec![noise(1000, 2)],
            expect: Some("malformed frame"),
        },
        Case {
            name: "an oversized frame",
            opening: at_follower(),
            frames: vec![vec![0x90; MAX_FRAME_BYTES + 1]],
            expect: Some(""),
        },
        Case {
            name: "an undecodable raft message in a valid envelope",
            opening: at_follower(),
            frames: vec![Frame::Raft {
                messages: vec![ByteBuf::from(vec![0xff; 16])],
            }
            .encode()],
            expect: Some("malformed raft message"),
        },
        Case {
            name: "a raft message claiming another sender",
            opening: at_follower(),
            frames: vec![raft_frame(vec![message(MsgHeartbeat, l, t, |m| {
                m.term = term
            })])],
            expect: Some("claims sender"),
        },
        Case {
            name: "a local message type",
            opening: at_follower(),
            frames: vec![frame(MsgHup, &|_| {})],
            expect: Some("is local"),
        },
        Case {
            name: "a forwarded leadership transfer",
            opening: at_leader(),
            frames: vec![to_leader(MsgTransferLeader, &|m| m.term = term)],
            expect: Some("never forwarded"),
        },
        Case {
            name: "an empty proposal",
            opening: at_leader(),
            frames: vec![to_leader(MsgPropose, &|_| {})],
            expect: Some("empty proposal"),
        },
        Case {
            name: "a proposal carrying a term (the raft crate panics forwarding it)",
            opening: at_follower(),
            frames: vec![frame(MsgPropose, &|m| {
                m.term = term;
                m.entries = vec![Entry::default()];
            })],
            expect: Some("with a term"),
        },
        Case {
            name: "a membership change of an unknown type",
            opening: at_leader(),
            frames: vec![to_leader(MsgPropose, &|m| {
                use prost::Message as _;
                let change = raft::eraftpb::ConfChange {
                    change_type: 7,
                    node_id: 5,
                    ..Default::default()
                };
                m.entries = vec![Entry {
                    entry_type: raft::eraftpb::EntryType::EntryConfChange as i32,
                    data: change.encode_to_vec(),
                    ..Default::default()
                }];
            })],
            expect: Some("malformed conf change"),
        },
        Case {
            name: "a vote request without a term",
            opening: at_follower(),
            frames: vec![frame(MsgRequestVote, &|_| {})],
            expect: Some("without a term"),
        },
        Case {
            name: "a read index without its context",
            opening: at_leader(),
            frames: vec![to_leader(MsgReadIndex, &|_| {})],
            expect: Some("exactly one entry"),
        },
        // Raft traffic no correct peer sends.
        Case {
            name: "an append whose commit is far beyond the log",
            opening: at_follower(),
            frames: vec![frame(MsgAppend, &|m| {
                m.term = term;
                m.index = s.last;
                m.commit = s.last + 1_000_000;
            })],
            expect: Some("whose leader is"),
        },
        Case {
            name: "a heartbeat whose commit is far beyond the log",
            opening: at_follower(),
            frames: vec![frame(MsgHeartbeat, &|m| {
                m.term = term;
                m.commit = s.last + 1_000_000;
            })],
            expect: Some("whose leader is"),
        },
        Case {
            name: "an injected entry, committed at once",
            opening: at_follower(),
            frames: vec![frame(MsgAppend, &|m| {
                m.term = term;
                m.index = s.last;
                m.log_term = term;
                m.entries = vec![Entry {
                    index: s.last + 1,
                    term,
                    data: b"forged".to_vec(),
                    ..Default::default()
                }];
                m.commit = s.last + 1;
            })],
            expect: Some("whose leader is"),
        },
        Case {
            name: "a snapshot that would replace the state",
            opening: at_follower(),
            frames: vec![frame(MsgSnapshot, &|m| {
                m.term = term;
                m.snapshot = Some(fake_snapshot(s.commit + 1000, term, raft_id(g)));
            })],
            expect: Some("whose leader is"),
        },
        Case {
            name: "a snapshot from a newer term while the leader is alive",
            opening: at_follower(),
            frames: vec![frame(MsgSnapshot, &|m| {
                m.term = term + 1;
                m.snapshot = Some(fake_snapshot(s.commit + 1000, term + 1, raft_id(g)));
            })],
            expect: None,
        },
        Case {
            name: "an acknowledgement of entries the leader never had",
            opening: at_leader(),
            frames: vec![to_leader(MsgAppendResponse, &|m| {
                m.term = term;
                m.index = 1 << 40;
            })],
            expect: Some("beyond the leader's last"),
        },
        Case {
            name: "high-term heartbeats to a follower (deposing its leader)",
            opening: at_follower(),
            frames: (1..=20)
                .map(|i| frame(MsgHeartbeat, &|m| m.term = term + i))
                .collect(),
            expect: None,
        },
        Case {
            name: "high-term answers to the leader (deposing it)",
            opening: at_leader(),
            frames: vec![
                to_leader(MsgHeartbeatResponse, &|m| m.term = term + 1),
                to_leader(MsgAppendResponse, &|m| {
                    m.term = term + 1;
                    m.reject = true;
                }),
            ],
            expect: None,
        },
        Case {
            name: "a storm of TimeoutNow",
            opening: at_follower(),
            frames: (0..100)
                .map(|_| frame(MsgTimeoutNow, &|m| m.term = term))
                .collect(),
            expect: Some("whose leader is"),
        },
        Case {
            name: "forced (transfer) vote requests from a non-voter",
            opening: at_follower(),
            frames: vec![frame(MsgRequestVote, &|m| {
                m.term = term + 1;
                m.index = s.last + 10;
                m.log_term = term;
                m.context = b"CampaignTransfer".to_vec();
            })],
            expect: None,
        },
        Case {
            name: "a term past 2^53",
            opening: at_follower(),
            frames: vec![frame(MsgHeartbeat, &|m| m.term = 1 << 53)],
            expect: Some("beyond #^#"),
        },
        Case {
            name: "the largest term",
            opening: at_follower(),
            frames: vec![frame(MsgRequestPreVote, &|m| m.term = u64::MAX)],
            expect: Some("beyond #^#"),
        },
        Case {
            name: "a term 2^30 ahead",
            opening: at_follower(),
            frames: vec![frame(MsgHeartbeat, &|m| m.term = term + (1 << 30))],
            expect: Some("beyond this node's"),
        },
        Case {
            // Unfinished chunks used to pile up to a gigabyte per connection.
            name: "chunks from a member that does not lead",
            opening: at_follower(),
            frames: vec![Frame::Chunk {
                bytes: ByteBuf::from(vec![0; 1 << 20]),
                last: false,
            }
            .encode()],
            expect: Some("only from the leader"),
        },
    ];
    for case in &mut cases {
        if case.expect.is_none() {
            let (from, to) = match &case.opening {
                Opening::Hello { from, to, .. } => (from.clone(), to.clone()),
                Opening::Raw => unreachable!("raw cases are refused"),
            };
            case.frames.push(probe(&from, &to));
        }
    }
    cases
}

/// A snapshot holding nothing useful, claiming `index` in `term`, whose configuration has
/// `voter` alone.
fn fake_snapshot(index: u64, term: u64, voter: u64) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.conf_state = Some(ConfState {
        voters: vec![voter],
        ..Default::default()
    });
    snapshot
}

/// Runs one case against `url`; returns how the connection ended and whether the
/// listener ever welcomed the attacker.
async fn run(url: &str, case: &Case) -> (String, bool) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let mut welcomed = false;
    if let Opening::Hello {
        cluster_id,
        from,
        to,
    } = &case.opening
    {
        ws.send(Ws::Binary(hello_frame(cluster_id, from, to).into()))
            .await
            .unwrap();
        match ws.next().await {
            Some(Ok(Ws::Binary(b))) => match Frame::decode(&b) {
                Ok(Frame::Welcome { .. }) => welcomed = true,
                Ok(Frame::Challenge { .. }) => {
                    // Without the secret, the best an attacker can do is guess.
                    let guess = Frame::Proof {
                        proof: ByteBuf::from(noise(32, 3)),
                    };
                    ws.send(Ws::Binary(guess.encode().into())).await.unwrap();
                }
                other => panic!("{}: unexpected handshake answer {other:?}", case.name),
            },
            Some(Ok(Ws::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                return (format!("closed: {reason}"), false);
            }
            other => return (format!("ended: {other:?}"), false),
        }
    }
    for f in &case.frames {
        if ws.send(Ws::Binary(f.clone().into())).await.is_err() {
            return ("closed while sending".into(), welcomed);
        }
    }
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Close(frame))) => {
                    return format!(
                        "closed: {}",
                        frame.map(|f| f.reason.to_string()).unwrap_or_default()
                    )
                }
                Some(Ok(Ws::Binary(b))) => {
                    if matches!(Frame::decode(&b), Ok(Frame::Welcome { .. })) {
                        welcomed = true;
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return format!("error: {e}"),
                None => return "eof".into(),
            }
        }
    })
    .await;
    (ended.unwrap_or_else(|_| "still open".into()), welcomed)
}

/// A cluster of three with a ghost learner, a writer that keeps writing through the leader
/// while the attacks run, and the record of what it had acknowledged.
struct Under {
    cluster: Cluster,
    scene: Scene,
    /// (key, the number written) of every acknowledged write, in order.
    acked: Arc<Mutex<Vec<(String, u64)>>>,
    writer: tokio::task::JoinHandle<()>,
}

async fn under_attack(tune: impl Fn(&mut Config)) -> Under {
    let cluster = Cluster::start(3, tune).await;
    let leader = cluster.wait_for_leader().await;
    let lead = cluster.node(&leader).clone();
    lead.change_membership(
        MembershipChange::Add {
            name: GHOST.into(),
            url: "ws://127.0.0.1:9".into(),
            learner: true,
        },
        DEADLINE,
    )
    .await
    .expect("the ghost learner is added");
    let target = cluster.other_than(&leader);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (lead, acked) = (lead.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("k{}", i % 50);
                match lead
                    .set(&key, i.to_string().into_bytes(), WriteOptions::default())
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push((key, i)),
                    Err(e) => panic!("a write failed during the attacks: {e}"),
                }
            }
        })
    };
    // Some writes first, so that there is a log to attack.
    common::wait_until(DEADLINE, || {
        (acked.lock().unwrap().len() >= 20).then_some(())
    })
    .await
    .expect("the writer writes");
    let status = cluster.node(&target).status();
    let scene = Scene {
        target,
        leader,
        term: status.term,
        commit: status.commit_index,
        last: status.commit_index,
    };
    Under {
        cluster,
        scene,
        acked,
        writer,
    }
}

impl Under {
    /// The cluster as if nothing had happened: the same leader in the same term, every
    /// acknowledged write on every member, identical states, no failure.
    async fn assert_untouched(self) {
        self.writer.abort();
        let _ = self.writer.await;
        let cluster = self.cluster;
        assert_eq!(
            cluster.wait_for_leader().await,
            self.scene.leader,
            "the leader stays"
        );
        for node in cluster.live() {
            assert_eq!(
                node.status().term,
                self.scene.term,
                "{}: the term moved",
                node.name()
            );
        }
        cluster.wait_converged().await;
        let acked = self.acked.lock().unwrap().clone();
        assert!(acked.len() > 20, "writes went on during the attacks");
        let states: Vec<_> =
            futures_util::future::join_all(cluster.names.iter().map(|n| cluster.state(n))).await;
        assert!(states.windows(2).all(|w| w[0] == w[1]), "states differ");
        // Each key holds its last acknowledged number, or a later one (written, never
        // acknowledged, when the writer stopped).
        let mut last = std::collections::HashMap::new();
        for (key, i) in acked {
            last.insert(key, i);
        }
        for (key, i) in last {
            let held = states[0]
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| String::from_utf8_lossy(v).parse::<u64>().unwrap());
            assert!(held >= Some(i), "{key}: acknowledged {i}, holds {held:?}");
        }
        cluster.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_every_attack_is_refused_or_harmless() {
    let under = under_attack(fast).await;
    let scene = &under.scene;
    let mut count = 0;
    for case in cases(scene) {
        let to = match &case.opening {
            Opening::Hello { to, .. } if *to == scene.leader => &scene.leader,
            _ => &scene.target,
        };
        let url = under.cluster.node(to).url().to_string();
        let (ended, _) = run(&url, &case).await;
        let expect = case.expect.unwrap_or(PROBE_REASON);
        assert!(
            ended.contains(expect) && ended != "still open",
            "{}: the connection must end with {expect:?}, got {ended:?}",
            case.name
        );
        assert!(
            !ended.contains(to.as_str()),
            "{}: the refusal names this node: {ended}",
            case.name
        );
        assert!(
            !ended.contains(|c: char| c.is_ascii_digit()),
            "{}: the refusal tells the peer a term, an index or an id: {ended}",
            case.name
        );
        under.cluster.assert_safe();
        count += 1;
    }
    eprintln!("{count} attacks without a secret");
    under.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_no_attack_gets_a_welcome_or_changes_anything() {
    let secret = common::random_secret();
    let under = under_attack(move |c: &mut Config| {
        fast(c);
        c.secret = Some(Secret::new(secret.as_str()));
    })
    .await;
    let scene = &under.scene;
    let mut count = 0;
    for case in cases(scene) {
        let url = under.cluster.node(&scene.target).url().to_string();
        let (ended, welcomed) = run(&url, &case).await;
        assert!(!welcomed, "{}: an attacker was welcomed", case.name);
        assert!(ended != "still open", "{}: left open", case.name);
        under.cluster.assert_safe();
        count += 1;
    }
    eprintln!("{count} attacks with a secret");
    under.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_bounded_and_a_silent_peer_is_closed() {
    let under = under_attack(fast).await;
    let url = under.cluster.node(&under.scene.target).url().to_string();
    let addr = url.trim_start_matches("ws://").to_string();
    // Open far more connections than one address may hold in their handshake, none of them
    // completing it: the oldest give way to the newest.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let closed_at_once = futures_util::future::join_all(flood.iter_mut().map(|tcp| async {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut byte)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }))
    .await;
    let held = closed_at_once.iter().filter(|closed| !**closed).count();
    assert!(
        held == MAX_HANDSHAKES_PER_ADDRESS,
        "{held} of 100 connections from one address held open"
    );
    // Meanwhile the members' own connections serve on.
    let lead = under.cluster.node(&under.scene.leader).clone();
    lead.set("during the flood", vec![1], WriteOptions::default())
        .await
        .expect("writes go on during a flood");
    drop(flood);
    // A peer that completes the handshake and then says nothing is closed as idle.
    let silent = Case {
        name: "silent after the handshake",
        opening: as_member(GHOST, &under.scene.target),
        frames: vec![],
        expect: Some("idle"),
    };
    let (ended, _) = run(&url, &silent).await;
    assert!(ended.contains("idle"), "silent peer: {ended}");
    under.assert_untouched().await;
}
