//! A write forwarded by a follower to a leader it cannot reach is held for the next
//! connection, so that a blip loses nothing. Held past its caller's deadline, it must not
//! leave at all: its caller was told `ERR_TIMEOUT` long ago, and a write that commits when
//! the connection comes back, seconds or minutes later, would overwrite what was written
//! since.

mod common;

use std::time::Duration;

use common::{fast, Cluster};
use raftline::{Consistency, Error, WriteOptions};

/// Phase 1: a follower's address for its leader refuses connections (the leader itself is
/// fine, and its heartbeats reach the follower over the leader's own connection): what the
/// follower forwards is held. Phase 2: a write through that follower times out, held.
/// Phase 3: well past that deadline the follower gets the right address back and connects.
/// Phase 4: a write after it commits, and the held one never does, on any member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_held_past_its_deadline_never_leaves() {
    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let name = cluster.other_than(&leader);
    let follower = cluster.node(&name).clone();
    let leader_url = cluster.node(&leader).url().to_string();

    // Phase 1: port 1 on loopback refuses.
    follower
        .set_peer_url(&leader, "ws://127.0.0.1:1")
        .expect("a new address");

    // Phase 2.
    let options = WriteOptions {
        timeout: Duration::from_millis(300),
        forward: true,
    };
    match follower.set("held", vec![1], options).await {
        Err(e @ Error::Timeout { .. }) => assert_eq!(e.code(), "ERR_TIMEOUT"),
        other => panic!("expected the held write to time out, got {other:?}"),
    }

    // Phase 3.
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower
        .set_peer_url(&leader, &leader_url)
        .expect("the right address");

    // Phase 4: through the follower, so after anything it held for the leader.
    let after = follower
        .set("after", vec![2], WriteOptions::default())
        .await
        .expect("a write once the address is right");
    cluster.wait_converged().await;
    for node in cluster.live() {
        let value = node
            .get("held", Consistency::Local)
            .await
            .expect("a local read");
        assert_eq!(
            value,
            None,
            "{}: the held write committed after its deadline (the write after it: {after:?})",
            node.name()
        );
    }
    cluster.assert_safe();
    cluster.stop().await;
}
