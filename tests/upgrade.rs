//! Upgrades: this release must read what the previous one wrote and talk to it, and the next
//! release must prove the same of this one. The fixtures under `tests/fixtures/upgrade/` are
//! what this release writes: a stopped member's data directory (format 1) and every kind of
//! peer frame (protocol 4). The next release keeps them, adds its own, and keeps these tests
//! passing. (Written by `cargo test --test upgrade -- --ignored write_fixtures`: run it only
//! when a release changes a format, into a new fixture, never over an old one.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{wait_until, Cluster, TempDir, DEADLINE, ONE_AT_A_TIME};
use futures_util::{SinkExt, StreamExt};
use raft::eraftpb::{Entry, Message, MessageType};
use raftline::transport::wire::{Frame, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use raftline::{Command, Compare, Consistency, Txn, TxnOp, WriteOptions};
use serde_bytes::ByteBuf;
use tokio_tungstenite::tungstenite::Message as Ws;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// One frame of each kind, as protocol 4 writes them.
fn protocol_4_frames() -> Vec<(&'static str, Frame)> {
    let append = Message {
        msg_type: MessageType::MsgAppend as i32,
        to: 2,
        from: 1,
        term: 3,
        log_term: 3,
        index: 41,
        commit: 41,
        entries: vec![Entry {
            term: 3,
            index: 42,
            data: Command::Set {
                key: "k".into(),
                value: ByteBuf::from(b"v".to_vec()),
            }
            .encode(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let heartbeat = Message {
        msg_type: MessageType::MsgHeartbeat as i32,
        to: 2,
        from: 1,
        term: 3,
        commit: 42,
        ..Default::default()
    };
    vec![
        (
            "hello",
            Frame::Hello {
                version: 4,
                cluster_id: "raftline".into(),
                from: "n1".into(),
                to: "n2".into(),
                nonce: ByteBuf::from(vec![7; 32]),
                http_url: "http://n1:8080".into(),
            },
        ),
        (
            "challenge",
            Frame::Challenge {
                nonce: ByteBuf::from(vec![8; 32]),
                proof: ByteBuf::from(vec![9; 32]),
            },
        ),
        (
            "proof",
            Frame::Proof {
                proof: ByteBuf::from(vec![10; 32]),
            },
        ),
        ("welcome", Frame::Welcome { version: 4 }),
        ("raft", Frame::raft(&[append, heartbeat])),
        (
            "chunk",
            Frame::Chunk {
                bytes: ByteBuf::from(vec![11; 16]),
                last: true,
            },
        ),
        (
            "refused",
            Frame::Refused {
                reason: "not a member of this cluster".into(),
            },
        ),
    ]
}

#[test]
fn every_frame_of_protocol_4_reads_back_and_is_still_written_the_same() {
    let text = std::fs::read_to_string(fixtures().join("protocol-4-frames.txt")).unwrap();
    let stored: BTreeMap<&str, Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, bytes) = l.split_once(' ').expect("name hex");
            (name, unhex(bytes))
        })
        .collect();
    let frames = protocol_4_frames();
    assert_eq!(stored.len(), frames.len(), "one fixture per kind of frame");
    for (name, frame) in frames {
        let bytes = &stored[name];
        assert_eq!(
            Frame::decode(bytes).as_ref(),
            Ok(&frame),
            "{name} reads back"
        );
        // Written the same: a change here is a protocol change (raise PROTOCOL_VERSION).
        assert_eq!(
            hex(&frame.encode()),
            hex(bytes),
            "{name} is written as before"
        );
    }
    const { assert!(MIN_PROTOCOL_VERSION <= 4 && 4 <= PROTOCOL_VERSION) };
}

/// The Hello of a member `from` offering `version`, over a raw WebSocket: the listener's
/// answer (a Welcome's version, or the reason it closed).
async fn offer(url: &str, from: &str, to: &str, version: u32) -> Result<u32, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = Frame::Hello {
        version,
        cluster_id: "raftline".into(),
        from: from.into(),
        to: to.into(),
        nonce: ByteBuf::from(vec![5; 32]),
        http_url: String::new(),
    };
    ws.send(Ws::Binary(hello.encode().into())).await.unwrap();
    let answer = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    match answer {
        Some(Ok(Ws::Binary(bytes))) => match Frame::decode(&bytes) {
            Ok(Frame::Welcome { version }) => Ok(version),
            other => Err(format!("{other:?}")),
        },
        Some(Ok(Ws::Close(frame))) => Err(frame.map(|f| f.reason.to_string()).unwrap_or_default()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_speaks_the_newest_version_both_sides_know_and_refuses_older_ones() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // A one-member node that also lists `later` (never started), as whom the test dials.
    let cluster = Cluster::start(1, |c| {
        c.peers.insert("later".into(), String::new());
    })
    .await;
    let url = cluster.node("n1").url().to_string();
    // A dialer of the next release offers its newer version and is answered with this one's.
    assert_eq!(
        offer(&url, "later", "n1", PROTOCOL_VERSION + 1).await,
        Ok(PROTOCOL_VERSION)
    );
    // The previous release offers 4 and speaks it.
    assert_eq!(offer(&url, "later", "n1", 4).await, Ok(4));
    // Older than this release speaks: refused, with the way out in the reason.
    let refused = offer(&url, "later", "n1", MIN_PROTOCOL_VERSION - 1).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|r| r.contains("upgrade one release at a time")),
        "{refused:?}"
    );
    cluster.stop().await;
}

/// The state a node holds, one line per key (value in hex, revisions, owning session), then
/// the sessions and locks: what the data directory fixture must restart with.
fn describe(kv: &[(String, raftline::KeyRecord)], sessions: usize, locks: usize) -> String {
    let mut out = String::new();
    for (key, r) in kv {
        out.push_str(&format!(
            "key {key} {} {} {} {}\n",
            hex(&r.value),
            r.create_index,
            r.mod_index,
            r.version
        ));
    }
    out.push_str(&format!("sessions {sessions}\nlocks-held {locks}\n"));
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_format_1_restarts_with_its_state_and_revisions() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("upgrade-format-1");
    copy_dir(&fixtures().join("datadir-format-1"), &dir.join("n1"));
    // What the directory holds, read without starting it (as `npx raftline inspect` does).
    let (meta, state) = raftline::operations::replay::read_stopped(&dir.join("n1")).unwrap();
    assert_eq!((meta.format, meta.node.as_str()), (1, "n1"));
    assert!(
        state.snapshot.is_some(),
        "the fixture has a snapshot and entries after it"
    );
    assert!(state.last_index > state.snapshot.unwrap().0);
    let expected = std::fs::read_to_string(fixtures().join("datadir-format-1.expected")).unwrap();
    let (locks, _) = state.kv.locks().counts();
    let offline = describe(
        &state.kv.page("", None, usize::MAX),
        state.kv.sessions().len(),
        locks,
    );
    assert_eq!(offline, expected);
    // Started, it elects itself and holds the same state.
    let cluster = Cluster::start(1, |c| c.data_dir = Some(dir.join("n1"))).await;
    cluster.wait_for_leader().await;
    let node = cluster.node("n1");
    let kv = node
        .page("", None, usize::MAX, Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(describe(&kv, state.kv.sessions().len(), locks), expected);
    let done = node
        .set("after-upgrade", vec![1], WriteOptions::default())
        .await
        .unwrap();
    assert!(done.index > state.last_index);
    cluster.stop().await;
}

/// Writes the fixtures of this release. Run by hand (see the module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn write_fixtures() {
    let out = fixtures();
    std::fs::create_dir_all(&out).unwrap();
    let mut text = String::from(
        "# Every kind of peer frame of protocol 4: name, then the frame's bytes in hex.\n",
    );
    for (name, frame) in protocol_4_frames() {
        text.push_str(&format!("{name} {}\n", hex(&frame.encode())));
    }
    std::fs::write(out.join("protocol-4-frames.txt"), text).unwrap();

    let data = out.join("datadir-format-1");
    let _ = std::fs::remove_dir_all(&data);
    let cluster = Cluster::start(1, |c| {
        c.data_dir = Some(data.clone());
        c.snapshot_every = 20;
    })
    .await;
    cluster.wait_for_leader().await;
    let node = cluster.node("n1").clone();
    let w = WriteOptions::default();
    let set = |key: &str, value: &str| Command::Set {
        key: key.into(),
        value: ByteBuf::from(value.as_bytes().to_vec()),
    };
    for i in 0..30 {
        node.write(set(&format!("config/{}", i % 7), &format!("v{i}")), w)
            .await
            .unwrap();
    }
    node.delete("config/6", w).await.unwrap();
    let txn = Txn {
        compares: vec![Compare::Exists {
            key: "config/0".into(),
            exists: true,
        }],
        then: vec![
            TxnOp::Set {
                key: "txn/a".into(),
                value: ByteBuf::from(b"1".to_vec()),
            },
            TxnOp::Delete {
                key: "config/5".into(),
            },
        ],
        otherwise: vec![],
    };
    node.write(Command::Txn(txn), w).await.unwrap();
    let once = Command::Idempotent {
        key: "order-1".into(),
        command: Box::new(set("orders/1", "paid")),
    };
    node.write(once, w).await.unwrap();
    let session = node
        .open_session(Duration::from_secs(24 * 3600), w)
        .await
        .unwrap();
    let ephemeral = Command::SetEphemeral {
        key: "workers/n1".into(),
        value: ByteBuf::from(b"alive".to_vec()),
        session,
    };
    node.write(ephemeral, w).await.unwrap();
    node.lock("jobs/tenant-1", session, false, w).await.unwrap();
    node.write(set("config/last", "after the snapshot"), w)
        .await
        .unwrap();
    wait_until(DEADLINE, || {
        (node.status().snapshot_index > 0).then_some(())
    })
    .await
    .unwrap();
    let kv = node
        .page("", None, usize::MAX, Consistency::Local)
        .await
        .unwrap();
    let expected = describe(&kv, 1, 1);
    cluster.stop().await;
    std::fs::write(out.join("datadir-format-1.expected"), expected).unwrap();
    let _ = std::fs::remove_file(data.join("LOCK"));
}
