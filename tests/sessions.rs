//! Sessions over real sockets (the simulated network's tests cover their timing).

mod common;

use std::time::Duration;

use common::{wait_until, Cluster};
use raftline::{Error, WriteOptions};

/// A session opened for a caller that gave up waiting (its write timed out, outcome unknown)
/// is closed by its node once it applies, not left to hold its TTL (a minute here): before,
/// 10,000 lock requests under load left 5,570 such sessions behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_opener_gave_up_is_closed_when_it_applies() {
    // The default timing: a stall of 100 ms elects nobody.
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.node(&cluster.other_than(&leader)).clone();
    // Phase 1: the leader's engine stalls; the follower's open times out meanwhile.
    let before = follower.status().applied_index;
    cluster
        .node(&leader)
        .stall_driver(Duration::from_millis(100))
        .await
        .unwrap();
    let quick = WriteOptions {
        timeout: Duration::from_millis(50),
        forward: true,
    };
    let opened = follower.open_session(Duration::from_secs(60), quick).await;
    assert!(
        matches!(opened, Err(Error::Timeout { .. })),
        "the open outlived its caller: {opened:?}"
    );
    // Phase 2: after the stall the open applies, and the follower closes it at once: two
    // entries (nothing else is written), and no session left.
    let closed = wait_until(Duration::from_secs(5), || {
        let applied = follower.status().applied_index;
        (applied >= before + 2 && follower.sessions().is_empty()).then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "applied {} entries since; sessions {:?}",
        follower.status().applied_index - before,
        follower.sessions()
    );
    cluster.stop().await;
}
