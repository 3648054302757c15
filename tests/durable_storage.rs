//! Durable storage over real files: restart with every acknowledged write, snapshots and
//! compaction keeping the disk bounded, a lagging follower caught up by snapshot, torn tails
//! repaired and corruption refused.

mod common;

use common::{dir_size, fast, wait_until, Cluster, TempDir, DEADLINE, ONE_AT_A_TIME};
use raftline::{Consistency, Role, WriteOptions};

fn opts() -> WriteOptions {
    WriteOptions::default()
}

/// A node of a durable cluster, at the default timing: with the fast one (election 50 ms),
/// a follower's fsync of megabytes outlasted the election timeout on this machine, and the
/// leader stepped down (check-quorum) with writes in flight.
fn durable(dir: &TempDir) -> impl Fn(&mut raftline::Config) + '_ {
    move |c| {
        c.data_dir = Some(dir.join(&c.name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_keeps_every_acknowledged_write() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("restart");
    let mut cluster = Cluster::start(3, durable(&dir)).await;
    cluster.wait_for_leader().await;
    for i in 0..200u32 {
        let node = cluster.node(&cluster.names[i as usize % 3]).clone();
        node.set(&format!("k{i}"), i.to_le_bytes().to_vec(), opts())
            .await
            .unwrap();
    }
    let before = cluster
        .node("n1")
        .entries("", Consistency::Linearizable)
        .await
        .unwrap();
    for name in cluster.names.clone() {
        cluster.kill(&name).await;
    }
    for name in cluster.names.clone() {
        cluster
            .launch(&name)
            .await
            .expect("restarts from its data directory");
    }
    cluster.wait_for_leader().await;
    for name in cluster.names.clone() {
        let after = cluster
            .node(&name)
            .entries("", Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(after, before, "{name} recovered every key");
    }
    cluster
        .node("n2")
        .set("after-restart", vec![1], opts())
        .await
        .unwrap();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_recovers_alone() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("single");
    let mut cluster = Cluster::start(1, durable(&dir)).await;
    cluster.wait_for_leader().await;
    cluster
        .node("n1")
        .set("solo", b"kept".to_vec(), opts())
        .await
        .unwrap();
    cluster.kill("n1").await;
    cluster.launch("n1").await.unwrap();
    cluster.wait_for_leader().await;
    assert_eq!(
        cluster
            .node("n1")
            .get("solo", Consistency::Linearizable)
            .await
            .unwrap(),
        Some(b"kept".to_vec())
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_disk_and_a_stopped_follower_catches_up_by_snapshot() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("compaction");
    let mut cluster = Cluster::start(3, |c| {
        durable(&dir)(c);
        c.snapshot_every = 500;
        c.wal_segment_bytes = 64 << 10;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let lagging = cluster.other_than(&leader);
    cluster.kill(&lagging).await;

    // An endless-overwrite workload: 20,000 writes over 100 keys, many compactions.
    let h = cluster.node(&leader).clone();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let h = h.clone();
            tokio::spawn(async move {
                for i in 0..625u32 {
                    let value = vec![(w + i) as u8; 200];
                    h.set(&format!("key{}", (w * 625 + i) % 100), value, opts())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let bound = 3 << 20;
    let used = dir_size(&dir.join(&leader));
    eprintln!("leader data directory after 20,000 writes: {used} bytes (bound {bound})");
    assert!(
        used < bound,
        "leader uses {used} bytes, over the {bound} bound"
    );
    assert!(
        cluster.node(&leader).status().snapshot_index > 0,
        "the log was compacted"
    );

    // The follower was behind the compacted log: it must be sent a snapshot.
    cluster.launch(&lagging).await.unwrap();
    let caught_up = wait_until(DEADLINE, || {
        let (l, f) = (
            cluster.node(&leader).status(),
            cluster.node(&lagging).status(),
        );
        (f.applied_index >= 20_000 && f.applied_index == l.applied_index).then_some(())
    })
    .await;
    assert!(
        caught_up.is_some(),
        "follower caught up: {:?}",
        cluster.describe()
    );
    let installed = cluster
        .record
        .lock()
        .unwrap()
        .snapshots
        .iter()
        .any(|(n, _)| *n == lagging);
    assert!(installed, "the follower installed a snapshot");
    assert_eq!(
        cluster.state(&lagging).await,
        cluster.state(&leader).await,
        "identical states"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_repaired_and_corruption_is_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("damage");
    let mut cluster = Cluster::start(3, durable(&dir)).await;
    cluster.wait_for_leader().await;
    for i in 0..100u32 {
        cluster
            .node("n1")
            .set(&format!("k{i}"), vec![i as u8; 64], opts())
            .await
            .unwrap();
    }
    let follower = cluster
        .names
        .iter()
        .find(|n| cluster.node(n).status().role != Role::Leader)
        .unwrap()
        .clone();
    cluster.kill(&follower).await;
    let newest = |name: &str| {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(name).join("wal"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files.pop().unwrap()
    };

    // Torn tail: the last bytes of the newest log file are gone.
    let path = newest(&follower);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    cluster
        .launch(&follower)
        .await
        .expect("a torn tail is repaired");
    // Every node, the repaired one included, follows one leader again.
    let leader = cluster.wait_for_leader().await;
    cluster
        .node(&leader)
        .set("after-torn", vec![1], opts())
        .await
        .unwrap();
    let rejoined = wait_until(DEADLINE, || cluster.node(&follower).get_local("after-torn")).await;
    assert_eq!(
        rejoined,
        Some(vec![1]),
        "the repaired follower rejoined and caught up"
    );

    // Corruption: one byte flipped in a committed record in the middle of the log.
    cluster.kill(&follower).await;
    let path = newest(&follower);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside the first record's payload (after its 8-byte header): committed, and never the
    // tail, which recovery may take for a torn write (the follower caught up in one big
    // record, so the file's middle can lie in its last record).
    bytes[12] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let err = cluster
        .launch(&follower)
        .await
        .expect_err("corruption is refused");
    assert_eq!(err.code(), "ERR_STORAGE");
    let msg = err.to_string();
    assert!(
        msg.contains(path.file_name().unwrap().to_str().unwrap()) && msg.contains("offset"),
        "names file and offset: {msg}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_frame_travels_in_chunks() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("chunks");
    let mut cluster = Cluster::start(3, |c| {
        durable(&dir)(c);
        c.snapshot_every = 20;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let lagging = cluster.other_than(&leader);
    cluster.kill(&lagging).await;
    // About 90 MiB of state: more than one frame may carry whole, so the snapshot is cut
    // into chunks.
    for i in 0..90u32 {
        let value = vec![i as u8; (1 << 20) - 64];
        cluster
            .node(&leader)
            .set(&format!("big{i}"), value, opts())
            .await
            .unwrap();
    }
    // Snapshots are written in the background: wait for one that holds over 63 MiB.
    let lead = cluster.node(&leader).clone();
    wait_until(DEADLINE, || {
        (lead.status().snapshot_index >= 80).then_some(())
    })
    .await
    .expect("the leader snapshotted");
    cluster.launch(&lagging).await.unwrap();
    // 90 MiB to send, fsync and restore: allow for a machine busy with other work.
    let caught_up = wait_until(6 * DEADLINE, || cluster.node(&lagging).get_local("big89")).await;
    assert_eq!(
        caught_up.map(|v| v.len()),
        Some((1 << 20) - 64),
        "the follower caught up"
    );
    let chunked = cluster
        .live()
        .iter()
        .map(|h| {
            h.transport_stats()
                .chunked_messages
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum::<u64>();
    assert!(chunked > 0, "the snapshot was sent in chunks");
    assert_eq!(
        cluster.state(&lagging).await,
        cluster.state(&leader).await,
        "identical states"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_serves_one_node_at_a_time() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("lock");
    let config = |name: &str| {
        let mut c = raftline::Config::new(name);
        c.listen = Some("127.0.0.1:0".into());
        c.data_dir = Some(dir.join("data"));
        fast(&mut c);
        c
    };
    let first = raftline::start(config("n1"))
        .await
        .expect("first node starts");
    let err = raftline::start(config("n1"))
        .await
        .err()
        .map(|e| (e.code(), e.to_string()));
    let (code, msg) = err.expect("a second node on the same directory is refused");
    assert_eq!(code, "ERR_STORAGE");
    assert!(msg.contains("in use"), "{msg}");
    first.stop().await;
    let again = raftline::start(config("n1"))
        .await
        .expect("free again after stop");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_lost_on_the_way_is_sent_again_without_an_election() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("lost-snapshot");
    let cluster = Cluster::start(3, |c| {
        durable(&dir)(c);
        c.snapshot_every = 100;
        c.wal_segment_bytes = 16 << 10;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let lagging = cluster.other_than(&leader);
    let others: Vec<&str> = cluster
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != lagging)
        .collect();
    cluster.partition(&[lagging.as_str()], &others);
    let lead = cluster.node(&leader).clone();
    let mut last = 0;
    for i in 0..600u32 {
        last = lead
            .set(&format!("k{}", i % 50), i.to_le_bytes().to_vec(), opts())
            .await
            .unwrap()
            .index;
    }
    let behind = cluster.node(&lagging).status().applied_index;
    assert!(
        lead.status().snapshot_index > behind,
        "the leader compacted past the lagging follower"
    );
    let term = lead.status().term;
    // The first snapshot sent after the heal is lost, as on a connection that breaks while
    // it travels; heartbeats still get through. Reported lost, it is sent again.
    lead.faults().lose_snapshots(&lagging, 1);
    for other in &others {
        cluster.node(other).faults().unblock(&lagging);
        cluster.node(&lagging).faults().unblock(other);
    }
    // (The last write's own index: the leader's status, read right after the write, may
    // still be the one published before the turn that answered it.)
    let caught_up = wait_until(DEADLINE, || {
        (cluster.node(&lagging).status().applied_index >= last).then_some(())
    })
    .await;
    assert!(
        caught_up.is_some(),
        "the follower catches up by a resent snapshot: {:?}",
        cluster.describe()
    );
    // The catch-up needed no election. (The leader's role is not asserted: the three nodes
    // share two runtime threads here, and on a loaded machine a check-quorum step-down can
    // follow the snapshot's install; a fresh-clone CI run saw one, in the same term.)
    assert_eq!(lead.status().term, term, "without an election");
    assert_eq!(cluster.state(&lagging).await, cluster.state(&leader).await);
    cluster.stop().await;
}

/// Group commit: the writes in flight together share the fsyncs of every member (the
/// leader's own, and each follower's for the appends that carry them), counted by
/// `log_syncs`. Measured at about 60-70 writes per fsync here and from JS at 256 in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_together_share_each_members_fsyncs() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Phase 1: a durable 3-node cluster.
    let dir = TempDir::new("grouped");
    let cluster = Cluster::start(3, durable(&dir)).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(&leader).clone();
    let before: Vec<u64> = cluster
        .names
        .iter()
        .map(|n| cluster.node(n).metrics().log_syncs)
        .collect();

    // Phase 2: 4,000 writes, 256 in flight at any time (each client writes again as soon
    // as its last write is acknowledged, as a loaded service does).
    const WRITES: usize = 4_000;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..256 {
        let (node, next) = (node.clone(), std::sync::Arc::clone(&next));
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= WRITES {
                    return;
                }
                node.set(&format!("k{}", i % 500), vec![7; 100], opts())
                    .await
                    .expect("every write commits");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }

    // Phase 3: every member wrote its log in far fewer fsyncs than there were writes
    // (one fsync per write would be 4,000).
    for (name, before) in cluster.names.iter().zip(before) {
        let syncs = cluster.node(name).metrics().log_syncs - before;
        eprintln!("{name}: {WRITES} writes in {syncs} fsyncs");
        assert!(
            syncs * 20 <= WRITES as u64,
            "{name}: {syncs} fsyncs for {WRITES} writes"
        );
    }
    cluster.stop().await;
}

/// A hard state that only moves the commit index is written but not waited for: a
/// follower told a commit index on its own (the leader's notice after the last write)
/// fsyncs once per write, for its entries. Before, it fsynced twice, and the second fsync
/// delayed the next write's append (a sequential durable write took 0.93 ms at p50; 0.5
/// after). What the unsynced record may lose, a node learns again from its leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_index_alone_costs_a_follower_no_fsync() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Phase 1: a durable 3-node cluster, every member at the same applied index.
    let dir = TempDir::new("commit-alone");
    let cluster = Cluster::start(3, durable(&dir)).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(&leader).clone();
    let all_applied = |index: u64| {
        let cluster = &cluster;
        wait_until(DEADLINE, move || {
            let applied = |n: &String| cluster.node(n).status().applied_index;
            cluster
                .names
                .iter()
                .all(|n| applied(n) >= index)
                .then_some(())
        })
    };
    let first = node.set("warm", vec![1], opts()).await.unwrap().index;
    all_applied(first)
        .await
        .expect("every member applies the first write");
    let syncs = |n: &String| cluster.node(n).metrics().log_syncs;
    let before: Vec<u64> = cluster.names.iter().map(syncs).collect();

    // Phase 2: writes one at a time, each applied by every member (so told its commit
    // index alone) before the next.
    const WRITES: u64 = 20;
    for i in 0..WRITES {
        let index = node
            .set(&format!("k{i}"), vec![7; 100], opts())
            .await
            .unwrap()
            .index;
        all_applied(index)
            .await
            .expect("every member applies the write");
    }

    // Phase 3: each follower fsynced once a write (a new term would add one).
    for (name, before) in cluster.names.iter().zip(before) {
        let fsyncs = syncs(name) - before;
        eprintln!("{name}: {WRITES} writes in {fsyncs} fsyncs");
        if *name != leader {
            assert!(
                (WRITES..=WRITES + 1).contains(&fsyncs),
                "{name}: {fsyncs} fsyncs for {WRITES} writes"
            );
        }
    }
    cluster.stop().await;
}
