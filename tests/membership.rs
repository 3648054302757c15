//! Membership changes over real sockets: a change made right after a leadership change,
//! removing the leader under a steady writer, a removed member that knows it, member URLs,
//! and the strict reconfiguration check that keeps a quorum reachable.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast, Cluster, DEADLINE};
use raftline::{Consistency, Error, MembershipChange, NodeHandle, WriteOptions};

fn opts() -> WriteOptions {
    WriteOptions::default()
}

fn remove(name: &str) -> MembershipChange {
    MembershipChange::Remove { name: name.into() }
}

/// Writes through `node` one after another until `stop`; counts the acknowledged ones.
fn steady_writer(
    node: NodeHandle,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let acked = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&acked);
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            if node
                .set(&format!("w{}", i % 20), i.to_le_bytes().to_vec(), opts())
                .await
                .is_ok()
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
            tokio::task::yield_now().await;
        }
    });
    (acked, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_forwarded_right_after_a_leadership_transfer_completes() {
    let cluster = Cluster::start(3, fast).await;
    let old = cluster.wait_for_leader().await;
    let target = cluster.other_than(&old);
    let gone = cluster
        .names
        .iter()
        .find(|n| **n != old && **n != target)
        .unwrap()
        .clone();
    // The new leader refuses conf changes until it has applied its first entry: a change
    // forwarded at once used to be dropped silently and time out.
    let new = cluster
        .node(&old)
        .transfer_leadership(Some(&target), DEADLINE)
        .await
        .unwrap();
    assert_eq!(new, target);
    let started = Instant::now();
    cluster
        .node(&old)
        .change_membership(remove(&gone), DEADLINE)
        .await
        .expect("the change completes");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_under_a_steady_writer_completes_and_hands_over() {
    let mut cluster = Cluster::start(5, fast).await;
    for round in 0..2 {
        let leader = cluster.wait_for_leader().await;
        let writer_node = cluster.other_than(&leader);
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, writer) = steady_writer(cluster.node(&writer_node).clone(), Arc::clone(&stop));
        common::wait_until(DEADLINE, || {
            (acked.load(Ordering::Relaxed) > 20).then_some(())
        })
        .await
        .expect("the writer makes progress");
        // The leader removes itself: it leads the change, then hands leadership over.
        cluster
            .node(&leader)
            .change_membership(remove(&leader), DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("round {round}: removing leader {leader}: {e}"));
        let before = acked.load(Ordering::Relaxed);
        common::wait_until(DEADLINE, || {
            (acked.load(Ordering::Relaxed) > before + 20).then_some(())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "round {round}: writes go on after the removal: {:?}",
                cluster.describe()
            )
        });
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        // The removed leader knows it: it refuses work at once.
        let removed = cluster.node(&leader).clone();
        common::wait_until(DEADLINE, || removed.status().removed.then_some(()))
            .await
            .expect("the removed leader learns its removal");
        let started = Instant::now();
        assert_eq!(
            removed.set("k", vec![1], opts()).await.unwrap_err(),
            Error::Removed
        );
        assert_eq!(
            removed
                .get("k", Consistency::Linearizable)
                .await
                .unwrap_err()
                .code(),
            "ERR_REMOVED"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        cluster.kill(&leader).await;
        cluster.names.retain(|n| *n != leader);
        let new_leader = cluster.wait_for_leader().await;
        assert_ne!(new_leader, leader);
        let voters = cluster.node(&new_leader).status().voters;
        assert_eq!(voters.len(), 4 - round, "round {round}: {voters:?}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_follower_rejects_at_once_and_members_show_urls() {
    let mut cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let joiner = cluster.launch_joiner("n4", fast).await;
    let lead = cluster.node(&leader).clone();
    lead.change_membership(
        MembershipChange::Add {
            name: "n4".into(),
            url: joiner.url().to_string(),
            learner: true,
        },
        DEADLINE,
    )
    .await
    .expect("learner added");
    let url_of =
        |m: Vec<raftline::MemberView>| m.into_iter().find(|m| m.name == "n4").and_then(|m| m.url);
    assert_eq!(
        url_of(lead.members()).as_deref(),
        Some(joiner.url()),
        "the leader knows its URL"
    );
    common::wait_until(DEADLINE, || {
        (url_of(joiner.members()).is_some()).then_some(())
    })
    .await
    .expect("the joiner lists itself with its URL once it replays the change");

    lead.change_membership(remove("n4"), DEADLINE)
        .await
        .expect("removed");
    common::wait_until(DEADLINE, || joiner.status().removed.then_some(()))
        .await
        .expect("the removed learner learns it");
    let started = Instant::now();
    assert_eq!(
        joiner.set("k", vec![1], opts()).await.unwrap_err(),
        Error::Removed
    );
    assert_eq!(
        joiner
            .change_membership(remove("n1"), DEADLINE)
            .await
            .unwrap_err(),
        Error::Removed
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "at once, not at a deadline"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_would_leave_no_reachable_quorum_are_refused() {
    let mut cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let others: Vec<String> = cluster
        .names
        .iter()
        .filter(|n| **n != leader)
        .cloned()
        .collect();
    cluster.kill(&others[0]).await;
    let lead = cluster.node(&leader).clone();
    let dead = others[0].clone();
    common::wait_until(DEADLINE, || {
        lead.members()
            .iter()
            .any(|m| m.name == dead && m.health == raftline::Health::Unhealthy)
            .then_some(())
    })
    .await
    .expect("the leader sees the killed member down");
    // With one of three down, a fourth voter nobody runs would leave 2 of 4 reachable.
    let err = lead
        .change_membership(
            MembershipChange::Add {
                name: "ghost".into(),
                url: "ws://127.0.0.1:1".into(),
                learner: false,
            },
            DEADLINE,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID", "{err}");
    assert!(
        err.to_string().contains("learner"),
        "says what to do: {err}"
    );
    // Removing the live follower would leave the dead one and the leader: 1 of 2.
    let err = lead
        .change_membership(remove(&others[1]), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID", "{err}");
    // The same refusal reaches a follower that asked (through the log, not a timeout).
    let started = Instant::now();
    let err = cluster
        .node(&others[1])
        .change_membership(remove(&leader), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // A learner does not count towards the quorum: adding one is fine.
    lead.change_membership(
        MembershipChange::Add {
            name: "ghost".into(),
            url: "ws://127.0.0.1:1".into(),
            learner: true,
        },
        DEADLINE,
    )
    .await
    .expect("a learner may be added");
    // Removing the dead member leaves 2 of 2 reachable.
    lead.change_membership(remove(&others[0]), DEADLINE)
        .await
        .expect("removing the dead member is fine");
    lead.set("still", vec![1], opts())
        .await
        .expect("the cluster still writes");
    cluster.stop().await;
}
