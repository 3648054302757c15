//! The leader lease (`isLeader`, lease reads, `runWhileLeader`) is granted only where it is
//! sound: with check-quorum, outside a leadership transfer, and never past its instant, even
//! when the driver is stalled.

mod common;

use std::time::{Duration, Instant};

use common::{fast, wait_until, Cluster, TempDir, DEADLINE};

/// Lease gains recorded for `name`.
fn gains(cluster: &Cluster, name: &str) -> usize {
    let record = cluster.record.lock().unwrap();
    record
        .leases
        .iter()
        .filter(|(_, n, held)| n == name && *held)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_check_quorum_no_lease_is_ever_granted() {
    // Control: with check-quorum the leader soon holds the lease.
    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let started = Instant::now();
    cluster
        .node(&leader)
        .wait_for(DEADLINE, |s| s.is_leader())
        .await
        .expect("a lease with check-quorum");
    let granted_after = started.elapsed();
    cluster.stop().await;

    // Without it, voters grant votes at once whatever they heard: a lease would be unsound.
    let cluster = Cluster::start(3, |c| {
        fast(c);
        c.check_quorum = false;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(&leader).clone();
    for i in 0..20u32 {
        node.set(&format!("k{i}"), vec![1], Default::default())
            .await
            .unwrap();
    }
    // Observe for many times what the lease took with check-quorum (at least 20 heartbeats).
    let window = (granted_after * 10).max(Duration::from_millis(200));
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(!node.status().is_leader(), "a lease without check-quorum");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gains(&cluster, &leader), 0, "no lease event either");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transfer_ends_the_lease_at_once() {
    let cluster = Cluster::start(3, |c| c.check_quorum = true).await;
    let leader = cluster.wait_for_leader().await;
    let lead = cluster.node(&leader).clone();
    lead.wait_for(DEADLINE, |s| s.is_leader())
        .await
        .expect("lease held");
    // Cut the transferee off: the transfer stays pending for an election timeout, during
    // which a delayed TimeoutNow could still elect it whatever leases the others honour.
    let target = cluster.other_than(&leader);
    cluster.partition(&[target.as_str()], &[leader.as_str()]);
    let transfer = {
        let lead = lead.clone();
        let target = target.clone();
        tokio::spawn(async move {
            lead.transfer_leadership(Some(&target), Duration::from_millis(300))
                .await
        })
    };
    wait_until(DEADLINE, || (!lead.status().is_leader()).then_some(()))
        .await
        .expect("the lease ends when the transfer starts");
    // It stays off while the transfer is pending, although a quorum answers probes.
    while !transfer.is_finished() {
        let status = lead.status();
        if status.role == raftline::Role::Leader {
            assert!(!status.is_leader(), "lease during a pending transfer");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = transfer.await.unwrap();
    cluster.heal();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_driver_cannot_stretch_the_lease() {
    let dir = TempDir::new("stall");
    let cluster = Cluster::start(3, |c| c.data_dir = Some(dir.join(&c.name))).await;
    let leader = cluster.wait_for_leader().await;
    let lead = cluster.node(&leader).clone();
    lead.wait_for(DEADLINE, |s| s.is_leader())
        .await
        .expect("lease held");
    // The driver blocks as in a long fsync: nothing it published can be renewed.
    let stall = Duration::from_secs(2);
    let stalled_at = Instant::now();
    lead.stall_driver(stall).await.unwrap();
    let ended = wait_until(DEADLINE, || (!lead.status().is_leader()).then(Instant::now))
        .await
        .expect("the lease ends");
    let after = ended - stalled_at;
    // The default lease is 120 ms (election timeout less two ticks).
    assert!(
        after < Duration::from_millis(500),
        "the lease ended {after:?} into a {stall:?} stall, not by its own instant"
    );
    cluster.stop().await;
}
