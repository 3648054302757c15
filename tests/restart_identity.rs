//! A restarted node must never answer a new write with an entry it proposed in an earlier
//! life: every acknowledged write's index holds exactly that write, on every member.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{fast, Cluster, TempDir};
use raftline::{NodeHandle, WriteOptions};

/// `count` writes through `node`, `inflight` at a time, with values unique to `life`.
/// Returns (index, key, value) of every acknowledged write.
async fn write_burst(
    node: &NodeHandle,
    life: &str,
    count: usize,
    inflight: usize,
) -> Vec<(u64, String, Vec<u8>)> {
    let mut acked = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        if tasks.len() >= inflight {
            if let Some(Ok(Some(done))) = tasks.join_next().await {
                acked.push(done);
            }
        }
        let node = node.clone();
        let key = format!("k{}", i % 50);
        let value = format!("{life}-{i}").into_bytes();
        tasks.spawn(async move {
            let options = WriteOptions {
                timeout: Duration::from_secs(5),
                forward: true,
            };
            match node.set(&key, value.clone(), options).await {
                Ok(outcome) => Some((outcome.index, key, value)),
                Err(_) => None, // killed with the write in flight: outcome unknown
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(done)) = done {
            acked.push(done);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_answers_each_write_with_its_own_entry() {
    let dir = TempDir::new("identity");
    let mut cluster = Cluster::start(3, |c| {
        fast(c);
        c.data_dir = Some(dir.join(&c.name));
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.other_than(&leader);

    // Each life writes through the follower and is killed with writes in flight, early
    // enough that the entries of its last writes are still being replicated back to it when
    // the next life starts writing at once (their sequence numbers are the new life's too).
    let mut acked = Vec::new();
    for life in 0..6 {
        let node = cluster.node(&follower).clone();
        let from = node.status().applied_index;
        let burst =
            tokio::spawn(async move { write_burst(&node, &format!("life{life}"), 400, 64).await });
        common::wait_until(common::DEADLINE, || {
            (cluster.node(&follower).status().applied_index > from + 100).then_some(())
        })
        .await
        .expect("the burst makes progress");
        cluster.kill(&follower).await;
        acked.extend(burst.await.unwrap());
        cluster.launch(&follower).await.expect("restarts");
    }
    // Writes issued at once after a restart wait for the leader instead of failing.
    let last = write_burst(cluster.node(&follower), "last", 400, 64).await;
    assert_eq!(
        last.len(),
        400,
        "every write of the last life is acknowledged"
    );
    acked.extend(last);
    let log = cluster.wait_converged().await;
    assert!(!log.is_empty());

    // Every acknowledged index holds that very write, as applied by the leader.
    let applied: HashMap<u64, (String, Vec<u8>)> = cluster
        .applied(&leader)
        .into_iter()
        .filter_map(|e| {
            let change = e.changes.first()?;
            Some((
                e.index,
                (change.key.clone(), change.value.as_deref()?.to_vec()),
            ))
        })
        .collect();
    let wrong: Vec<String> = acked
        .iter()
        .filter(|(index, key, value)| applied.get(index) != Some(&(key.clone(), value.clone())))
        .map(|(index, key, value)| {
            format!(
                "{key}={} acknowledged at {index}, which holds {:?}",
                String::from_utf8_lossy(value),
                applied
                    .get(index)
                    .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged writes point at another entry, e.g. {:?}",
        wrong.len(),
        acked.len(),
        &wrong[..wrong.len().min(5)]
    );
    cluster.stop().await;
}
