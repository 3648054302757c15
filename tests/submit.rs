//! Writes and reads submitted without awaiting each (`NodeHandle::submit_write`,
//! `submit_read`), as the binding submits a batch: every one is answered exactly once,
//! through its callback, whatever becomes of it.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{fast, Cluster, DEADLINE};
use raftline::{Command, Consistency, Error, ReadOptions, WriteOptions};
use serde_bytes::ByteBuf;

fn set(key: &str, value: &[u8]) -> Command {
    Command::Set {
        key: key.into(),
        value: ByteBuf::from(value.to_vec()),
    }
}

/// Phase 1: 20,000 writes submitted at once through a follower are all answered, each at
/// an index of its own. Phase 2: a linearizable read submitted after them sees the last.
/// Phase 3: on a stopped node, a submitted write and read are answered `Stopped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_submitted_request_is_answered_once() {
    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.node(&cluster.other_than(&leader)).clone();
    let (tx, rx) = mpsc::channel();
    for i in 0..20_000u32 {
        let tx = tx.clone();
        let command = set(&format!("k{}", i % 100), &i.to_le_bytes());
        follower.submit_write(command, WriteOptions::default(), move |outcome| {
            tx.send(outcome.map(|o| o.index)).unwrap();
        });
    }
    let mut indexes: Vec<u64> = (0..20_000)
        .map(|_| {
            rx.recv_timeout(DEADLINE)
                .expect("answered")
                .expect("written")
        })
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 20_000, "each at an index of its own");
    assert!(rx.try_recv().is_err(), "answered once");

    let (tx, rx) = mpsc::channel();
    let options = ReadOptions {
        consistency: Consistency::Linearizable,
        timeout: Duration::from_secs(5),
    };
    follower.submit_read("k99".into(), options, move |value| tx.send(value).unwrap());
    let value = rx.recv_timeout(DEADLINE).unwrap().unwrap();
    assert_eq!(value, Some(19_999u32.to_le_bytes().to_vec()));

    cluster.stop().await;
    let (tx, rx) = mpsc::channel();
    let on_write = tx.clone();
    follower.submit_write(set("late", b"x"), WriteOptions::default(), move |o| {
        on_write.send(o.map(|_| ())).unwrap()
    });
    follower.submit_read("late".into(), options, move |v| {
        tx.send(v.map(|_| ())).unwrap()
    });
    for _ in 0..2 {
        let answer = rx.recv_timeout(DEADLINE).unwrap();
        assert!(matches!(answer, Err(Error::Stopped)), "{answer:?}");
    }
}

/// More writes submitted while the driver is stalled than its request queue holds (65,536,
/// and up to 1,024 the driver took with the stall in its turn): the excess is answered
/// `Overloaded` at once (nothing was proposed), the rest are written once the driver goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_past_the_request_queue_are_refused_as_overloaded() {
    let cluster = Cluster::start(1, fast).await;
    cluster.wait_for_leader().await;
    let node = cluster.node("n1").clone();
    node.stall_driver(Duration::from_secs(2)).await.unwrap();
    let (tx, rx) = mpsc::channel();
    let total = 100_000u32;
    for i in 0..total {
        let tx = tx.clone();
        node.submit_write(
            set("k", &i.to_le_bytes()),
            WriteOptions::default(),
            move |o| {
                tx.send(o.map(|_| ())).unwrap();
            },
        );
    }
    let (mut written, mut overloaded) = (0, 0);
    for _ in 0..total {
        match rx.recv_timeout(DEADLINE).expect("answered") {
            Ok(()) => written += 1,
            Err(Error::Overloaded(_)) => overloaded += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        overloaded >= total - 65_536 - 1_024 && written >= 65_536,
        "{written} written, {overloaded} overloaded"
    );
    cluster.stop().await;
}
