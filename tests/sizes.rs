//! Sizes that agree end to end: what a writer sends, a listener accepts; what the WAL writes,
//! recovery reads; what waits on a node is bounded, with a clear error past the bound. Each
//! case failed before its fix (named in the test).

mod common;

use std::time::{Duration, Instant};

use common::{fast, wait_until, Cluster, TempDir, DEADLINE, ONE_AT_A_TIME};

use raftline::{Command, Consistency, Error, WriteOptions};

fn within(timeout: Duration) -> WriteOptions {
    WriteOptions {
        timeout,
        ..WriteOptions::default()
    }
}

/// A value whose `set` command encodes to exactly `bytes` bytes.
fn value_filling(key: &str, bytes: usize) -> Vec<u8> {
    let encoded = |len: usize| {
        Command::Set {
            key: key.into(),
            value: serde_bytes::ByteBuf::from(vec![0u8; len]),
        }
        .encode()
        .len()
    };
    let mut len = bytes - (encoded(bytes) - bytes);
    while encoded(len) > bytes {
        len -= 1;
    }
    assert_eq!(encoded(len), bytes, "a value filling {bytes} bytes exactly");
    vec![0x5a; len]
}

/// Writes `count` copies of `value` through `node` under `prefix/i`, eight in flight;
/// returns the highest index acknowledged. (Wait for that index, not for a status read after
/// the writes: the status is published after the turn that answered the last write, and a
/// wait on it raced with that turn and accepted the index before the last write.)
async fn write_eight_at_a_time(
    node: &raftline::NodeHandle,
    prefix: &str,
    count: usize,
    value: Vec<u8>,
) -> u64 {
    let mut writes = tokio::task::JoinSet::new();
    let mut last = 0;
    for i in 0..count {
        let (node, value, key) = (node.clone(), value.clone(), format!("{prefix}/{i}"));
        writes.spawn(async move { node.set(&key, value, within(DEADLINE)).await });
        if writes.len() >= 8 {
            let outcome = writes.join_next().await.unwrap().unwrap().expect("write");
            last = last.max(outcome.index);
        }
    }
    while let Some(done) = writes.join_next().await {
        last = last.max(done.unwrap().expect("write").index);
    }
    last
}

/// Before: appends to a follower far behind were packed into frames of ~121 MB, over the
/// listener's 64 MiB limit; each was refused, the connection redialled, one probe got
/// through, and catching up took 70-90 s while the healthy pair lost its leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_120_mib_behind_catches_up_by_log_with_no_frame_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Phase 1: a cluster at the default timing, whose follower n3 is cut off.
    let cluster = Cluster::start(3, |c| c.snapshot_every = 1_000_000).await;
    let leader = cluster.wait_for_leader().await;
    let lagging = cluster.other_than(&leader);
    let healthy: Vec<String> = cluster
        .names
        .iter()
        .filter(|n| **n != lagging)
        .cloned()
        .collect();
    let others: Vec<&str> = healthy.iter().map(String::as_str).collect();
    cluster.partition(&[&lagging], &others);

    // Phase 2: 120 MiB of writes (1 MiB values, 8 in flight) that it misses.
    let lead = cluster.node(&leader).clone();
    let target = write_eight_at_a_time(&lead, "big", 120, vec![0xa5u8; (1 << 20) - 64]).await;
    let term = lead.status().term;
    let lagging_applied = cluster.node(&lagging).status().applied_index;
    assert!(target > lagging_applied + 100, "n3 is far behind");

    // Phase 3: heal; it catches up from the log within seconds, no frame is refused, and
    // the healthy pair keeps its leader and term.
    let healed = Instant::now();
    cluster.heal();
    let node = cluster.node(&lagging).clone();
    wait_until(Duration::from_secs(20), || {
        (node.status().applied_index >= target).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("caught up: {:?}", cluster.describe()));
    let took = healed.elapsed();
    eprintln!("a follower 120 MiB behind caught up in {took:?}");
    assert_eq!(
        node.status().snapshot_index,
        0,
        "it caught up from the log, not from a snapshot"
    );
    for name in &cluster.names {
        let refused = cluster
            .node(name)
            .transport_stats()
            .frames_refused
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(refused, 0, "{name} refused frames");
    }
    for name in &healthy {
        let status = cluster.node(name).status();
        assert_eq!(status.term, term, "{name}: no election among the others");
        assert_eq!(status.leader.as_deref(), Some(leader.as_str()), "{name}");
    }
    let (behind, ahead) = (cluster.state(&lagging).await, cluster.state(&leader).await);
    assert!(
        behind == ahead,
        "the same state: {} and {} keys",
        behind.len(),
        ahead.len()
    );
    cluster.stop().await;
}

/// Before: a follower forwarded a proposal over 1 MiB in chunks, which only the leader may
/// send; the leader closed the connection and the write timed out (with the default limit,
/// values within ~60 bytes of it failed the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_through_a_follower_reach_the_leader() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, |c| {
        fast(c);
        c.max_proposal_bytes = 4 << 20;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.node(&cluster.other_than(&leader)).clone();
    let outcome = follower
        .set("two-mib", vec![7; 2 << 20], within(DEADLINE))
        .await
        .expect("a 2 MiB write through a follower");
    assert!(outcome.index > 0);
    cluster.stop().await;

    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.node(&cluster.other_than(&leader)).clone();
    let limit = raftline::config::DEFAULT_MAX_PROPOSAL_BYTES;
    follower
        .set("full", value_filling("full", limit), within(DEADLINE))
        .await
        .expect("a write of exactly the default limit through a follower");
    let over = follower
        .set("over", value_filling("over", limit + 1), within(DEADLINE))
        .await
        .expect_err("one byte more is too large");
    assert_eq!(over.code(), "ERR_TOO_LARGE");
    for name in &cluster.names {
        assert_eq!(
            cluster
                .node(name)
                .get("full", Consistency::Linearizable)
                .await
                .unwrap()
                .map(|v| v.len()),
            Some(value_filling("full", limit).len()),
            "{name}"
        );
    }
    cluster.stop().await;
}

/// Waits until `name` knows no leader (cut off, it campaigns in vain).
async fn wait_leaderless(cluster: &Cluster, name: &str) {
    let node = cluster.node(name).clone();
    wait_until(DEADLINE, || node.status().leader.is_none().then_some(()))
        .await
        .expect("the cut-off follower knows no leader");
}

/// A cluster of three whose follower (returned) is cut off and knows no leader.
async fn leaderless_follower() -> (Cluster, String) {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let cut_off = cluster.other_than(&leader);
    let others: Vec<&str> = cluster
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != cut_off)
        .collect();
    cluster.partition(&[&cut_off], &others);
    wait_leaderless(&cluster, &cut_off).await;
    (cluster, cut_off)
}

/// Issues `count` writes of `value` on `node`, each in a task of its own, and returns once
/// every one has reached the node's driver: a write's request is queued on its first poll,
/// and the driver answers requests in order, so once a transfer asked after them is
/// answered, each write was admitted (parked, while no leader is known) or refused.
async fn write_all_parked(
    node: &raftline::NodeHandle,
    prefix: &str,
    count: usize,
    value: Vec<u8>,
) -> tokio::task::JoinSet<raftline::Result<raftline::WriteOutcome>> {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let queued = Arc::new(AtomicUsize::new(0));
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..count {
        let (node, value, queued) = (node.clone(), value.clone(), Arc::clone(&queued));
        let key = format!("{prefix}/{i}");
        writes.spawn(async move {
            let mut write =
                Box::pin(
                    async move { node.set(&key, value, within(Duration::from_secs(60))).await },
                );
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
            queued.fetch_add(1, Ordering::SeqCst);
            match first {
                std::task::Poll::Ready(outcome) => outcome,
                std::task::Poll::Pending => write.await,
            }
        });
    }
    wait_until(DEADLINE, || {
        (queued.load(Ordering::SeqCst) == count).then_some(())
    })
    .await
    .expect("every write is queued");
    let barrier = node.transfer_leadership(None, DEADLINE).await;
    assert!(barrier.is_err(), "a leaderless follower transfers nothing");
    writes
}

/// The keys under `prefix` as a linearizable read sees them (a leader that changed during
/// the test may not have applied everything yet: a local read of its state raced).
async fn linearizable_count(cluster: &Cluster, prefix: &str) -> usize {
    let leader = cluster.wait_for_leader().await;
    cluster
        .node(&leader)
        .entries(prefix, Consistency::Linearizable)
        .await
        .expect("a linearizable read")
        .len()
}

/// Before: 10,000 writes parked on a leaderless follower left as one frame of 10,001
/// messages once the partition healed; the leader refused it and every write timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_writes_parked_on_a_leaderless_follower_all_commit() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (cluster, parked_on) = leaderless_follower().await;
    let node = cluster.node(&parked_on).clone();
    let mut writes = write_all_parked(&node, "parked", 10_000, vec![1; 16]).await;
    assert!(
        writes.try_join_next().is_none(),
        "every write waits for a leader"
    );
    cluster.heal();
    let mut committed = 0;
    while let Some(done) = writes.join_next().await {
        done.unwrap()
            .expect("a parked write commits after the heal");
        committed += 1;
    }
    assert_eq!(committed, 10_000);
    assert_eq!(linearizable_count(&cluster, "parked/").await, 10_000);
    cluster.stop().await;
}

/// Parked writes are bounded: past 256 MiB waiting for a leader a write fails at once with
/// ERR_OVERLOADED; every write admitted is proposed once a leader is known. (Three nodes
/// sharing two threads in this one test process may need an election to digest 256 MiB at
/// once: a write caught by it reports an unknown outcome, as the contract says, and the
/// state shows at least every committed write and none beyond those admitted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_parked_bound_fail_fast_with_overloaded() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (cluster, parked_on) = leaderless_follower().await;
    let node = cluster.node(&parked_on).clone();
    let value = vec![3u8; (1 << 20) - 64];
    let entry_bytes = Command::Set {
        key: "heavy/100".into(),
        value: serde_bytes::ByteBuf::from(value.clone()),
    }
    .encode()
    .len();
    let fit = raftline::core::MAX_PARKED_BYTES / entry_bytes;
    let mut writes = write_all_parked(&node, "heavy", 300, value).await;
    let mut overloaded = 0;
    while let Some(done) = writes.try_join_next() {
        match done.unwrap() {
            Err(Error::Overloaded(why)) => {
                assert!(why.contains("wait for a leader"), "{why}");
                overloaded += 1;
            }
            other => panic!("before the heal a write is refused or waits: {other:?}"),
        }
    }
    cluster.heal();
    let (mut committed, mut unknown) = (Vec::new(), 0);
    while let Some(done) = writes.join_next().await {
        match done.unwrap() {
            Ok(outcome) => committed.push(outcome.index),
            Err(Error::Overloaded(_)) => overloaded += 1,
            Err(e) if e.code() == "ERR_TIMEOUT" => unknown += 1,
            Err(e) => panic!("neither committed nor refused for overload: {e}"),
        }
    }
    assert_eq!(overloaded, 300 - fit, "refused past the bound");
    assert_eq!(
        committed.len() + unknown,
        fit,
        "every admitted write was proposed"
    );
    let stored = linearizable_count(&cluster, "heavy/").await;
    assert!(
        stored >= committed.len() && stored <= fit,
        "{stored} heavy keys"
    );
    cluster.stop().await;
}

/// Before: 40 writes of 30 MiB acknowledged in one Ready were one WAL record of 1.26 GB;
/// recovery refused it ("record length ... is impossible") and the node could not restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_acknowledged_1_2_gb_in_one_ready_restarts_with_every_write() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("huge-ready");
    let mut cluster = Cluster::start(1, |c| {
        c.data_dir = Some(dir.join(&c.name));
        c.max_proposal_bytes = 32 << 20;
    })
    .await;
    cluster.wait_for_leader().await;
    let node = cluster.node("n1").clone();
    // The driver stalls while the 40 writes queue: it then takes them in one turn, so
    // they are persisted in one Ready.
    let stall = {
        let node = node.clone();
        tokio::spawn(async move { node.stall_driver(Duration::from_secs(2)).await })
    };
    let value_len = 30 << 20;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..40u8 {
        let node = node.clone();
        writes.spawn(async move {
            node.set(
                &format!("huge/{i}"),
                vec![i; value_len],
                within(Duration::from_secs(120)),
            )
            .await
        });
    }
    stall.await.unwrap().unwrap();
    let mut indexes = Vec::new();
    while let Some(done) = writes.join_next().await {
        indexes.push(done.unwrap().expect("acknowledged").index);
    }
    indexes.sort();
    assert_eq!(indexes.len(), 40);

    cluster.kill("n1").await;
    cluster
        .launch("n1")
        .await
        .expect("restarts from its data directory");
    cluster.wait_for_leader().await;
    let node = cluster.node("n1").clone();
    for i in 0..40u8 {
        let value = node
            .get(&format!("huge/{i}"), Consistency::Linearizable)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("huge/{i} survived the restart"));
        assert!(
            value.len() == value_len && value.iter().all(|&b| b == i),
            "huge/{i}"
        );
    }
    cluster.stop().await;
}

/// Before: a snapshot was encoded and fsynced on the driver's thread: a state of hundreds of
/// megabytes stopped ticks and heartbeats for seconds, and the cluster held an election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_state_snapshots_without_an_election() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("big-snapshot");
    // Phase 1: three durable nodes at the default timing, led by n1, the only one that
    // snapshots (a leader whose driver stalls is what costs an election); 200 MB of state,
    // below its snapshot point.
    let cluster = Cluster::start(3, |c| {
        c.data_dir = Some(dir.join(&c.name));
        c.snapshot_every = if c.name == "n1" { 260 } else { 1_000_000 };
    })
    .await;
    let mut leader = cluster.wait_for_leader().await;
    if leader != "n1" {
        leader = cluster
            .node(&leader)
            .transfer_leadership(Some("n1"), DEADLINE)
            .await
            .expect("n1 leads");
        cluster.wait_for_leader_among(&["n1", "n2", "n3"]).await;
    }
    assert_eq!(leader, "n1");
    let lead = cluster.node(&leader).clone();
    write_eight_at_a_time(&lead, "state", 200, vec![0x3cu8; 1_000_000]).await;
    let term = lead.status().term;
    for name in &cluster.names {
        assert_eq!(
            cluster.node(name).status().snapshot_index,
            0,
            "{name}: no snapshot yet"
        );
    }

    // Phase 2: small writes carry the leader past its snapshot point; it snapshots its
    // 200 MB while the cluster goes on, with no election.
    for i in 0..80 {
        lead.set(&format!("small/{i}"), vec![1], within(DEADLINE))
            .await
            .expect("small write");
    }
    wait_until(Duration::from_secs(30), || {
        (lead.status().snapshot_index > 200).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the leader snapshotted: {:?}", cluster.describe()));
    for name in &cluster.names {
        let status = cluster.node(name).status();
        assert_eq!(status.term, term, "{name}: no election while snapshotting");
        assert_eq!(status.leader.as_deref(), Some(leader.as_str()), "{name}");
    }
    let snap_files = std::fs::read_dir(dir.join(&leader).join("snap"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .count();
    assert_eq!(snap_files, 1, "the leader keeps one snapshot file");
    cluster.stop().await;
}
