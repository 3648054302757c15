//! Day-two operations over real files and sockets: a backup taken while writes run restores
//! into a new cluster with every key and revision; a damaged backup is refused and writes
//! nothing; a survivor of a lost quorum restarts alone with its data and grows back.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast, wait_until, Cluster, TempDir, DEADLINE, ONE_AT_A_TIME};
use raftline::operations::restore::restore;
use raftline::operations::Backup;
use raftline::state_machine::SnapshotData;
use raftline::{Consistency, KeyRecord, MembershipChange, WriteOptions};

fn durable(dir: &TempDir) -> impl Fn(&mut raftline::Config) + '_ {
    move |c| {
        fast(c);
        c.election_timeout = Duration::from_millis(150);
        c.snapshot_every = 500;
        c.data_dir = Some(dir.join(&c.name));
    }
}

fn all(state: &SnapshotData) -> Vec<(String, KeyRecord)> {
    state.kv.page("", None, usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_writes_restores_into_a_new_cluster_with_every_key_and_revision() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("backup-source");
    let source = Cluster::start(3, durable(&dir)).await;
    let leader = source.wait_for_leader().await;

    // Phase 1: writers keep writing (new keys and overwrites) through every member.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, name) in source.names.clone().into_iter().enumerate() {
        let node = source.node(&name).clone();
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{}", i % 400);
                if let Ok(done) = node
                    .set(&key, i.to_le_bytes().to_vec(), WriteOptions::default())
                    .await
                {
                    acked.lock().unwrap().push((key, done.index));
                }
                i += 1;
            }
        }));
    }
    wait_until(DEADLINE, || {
        (acked.lock().unwrap().len() > 1500).then_some(())
    })
    .await
    .unwrap();

    // Phase 2: a backup from a follower, mid-stream.
    let follower = source.other_than(&leader);
    let before = acked.lock().unwrap().clone();
    let (index, term, bytes) = source.node(&follower).backup(DEADLINE).await.unwrap();
    wait_until(DEADLINE, || {
        (acked.lock().unwrap().len() > before.len() + 300).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let backup = Backup::decode(&bytes).unwrap();
    assert_eq!((backup.index, backup.term), (index, term));
    let state = SnapshotData::decode(&backup.data).unwrap();
    // Every write acknowledged before the call is in it (a later one of the same key may be too).
    for (key, at) in &before {
        let record = state
            .kv
            .record(key)
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(
            record.mod_index >= *at && record.mod_index <= index,
            "{key}: {record:?} vs {at}"
        );
    }
    // And nothing after its index: the backup is the state at one index.
    assert!(all(&state).iter().all(|(_, r)| r.mod_index <= index));
    assert!(
        acked.lock().unwrap().iter().any(|(_, at)| *at > index),
        "writes went on past it"
    );

    // Phase 3: every member of a new cluster restores the same file, then it starts.
    let target = TempDir::new("backup-target");
    let peers: BTreeMap<String, String> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| (n.to_string(), String::new()))
        .collect();
    for name in peers.keys() {
        assert_eq!(
            restore(&bytes, &target.join(name), name, &peers).unwrap(),
            (index, term)
        );
    }
    let restored = Cluster::start(3, durable(&target)).await;
    restored.wait_for_leader().await;
    for name in &restored.names {
        let keys = restored
            .node(name)
            .page("", None, usize::MAX, Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(
            keys,
            all(&state),
            "{name} holds the backup's keys with their revisions"
        );
    }
    // Phase 4: the new cluster goes on from the backup's index.
    let done = restored
        .node("n2")
        .set("after", vec![1], WriteOptions::default())
        .await
        .unwrap();
    assert!(done.index > index);
    restored.stop().await;
    source.stop().await;
}

#[tokio::test]
async fn a_damaged_backup_is_refused_and_writes_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("backup-damaged");
    let source = Cluster::start(1, fast).await;
    source.wait_for_leader().await;
    for i in 0..50u32 {
        source
            .node("n1")
            .set(&format!("k{i}"), vec![7; 100], WriteOptions::default())
            .await
            .unwrap();
    }
    let (_, _, bytes) = source.node("n1").backup(DEADLINE).await.unwrap();
    source.stop().await;
    let peers: BTreeMap<String, String> = [("n1".to_string(), String::new())].into();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 1;
    for (what, damaged) in [
        ("a flipped byte", &flipped[..]),
        ("a cut", &bytes[..bytes.len() - 10]),
    ] {
        let into = dir.join(what);
        let err = restore(damaged, &into, "n1", &peers).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID", "{what}: {err}");
        assert!(!into.exists(), "{what}: nothing written");
    }
    // Not into a directory that holds data, nor for a member not among the peers.
    std::fs::create_dir_all(dir.join("used")).unwrap();
    std::fs::write(dir.join("used/file"), b"x").unwrap();
    assert!(restore(&bytes, &dir.join("used"), "n1", &peers)
        .unwrap_err()
        .to_string()
        .contains("not empty"));
    assert!(restore(&bytes, &dir.join("other"), "n9", &peers).is_err());
    assert!(!dir.join("other").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_of_a_lost_quorum_restarts_alone_with_its_data_and_grows_back() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("force-new-cluster");
    let mut cluster = Cluster::start(3, durable(&dir)).await;
    cluster.wait_for_leader().await;
    // Phase 1: acknowledged writes, some past a snapshot, with the survivor-to-be leading
    // (a leader records its commit index lazily: recovery must not lean on it).
    // (A transfer may fail, answered within an election timeout: its TimeoutNow may be
    // dropped, by a transferee already in a newer term or that has not heard from the new
    // leader yet, just after an election. It is asked again.)
    for attempt in 0.. {
        let leader = cluster.wait_for_leader().await;
        if leader == "n1" {
            break;
        }
        let handed = cluster
            .node(&leader)
            .transfer_leadership(Some("n1"), DEADLINE)
            .await;
        assert!(
            handed.is_ok() || attempt < 5,
            "n1 never took over: {handed:?}"
        );
        cluster.wait_for_leader_among(&["n1", "n2", "n3"]).await;
    }
    let mut acked = Vec::new();
    for i in 0..700u32 {
        let node = cluster.node(&cluster.names[i as usize % 3]).clone();
        let done = node
            .set(
                &format!("k{}", i % 300),
                i.to_le_bytes().to_vec(),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        acked.push((format!("k{}", i % 300), i, done.index));
    }
    // Phase 2: two members die and lose their data; the survivor alone has no quorum.
    for name in ["n1", "n2", "n3"] {
        cluster.kill(name).await;
    }
    for name in ["n2", "n3"] {
        std::fs::remove_dir_all(dir.join(name)).unwrap();
    }
    // Phase 3: the survivor restarts as a new cluster of itself, keeping its data.
    cluster.config_mut("n1").force_new_cluster = true;
    cluster.launch("n1").await.unwrap();
    cluster.wait_for_leader_among(&["n1"]).await;
    let n1 = cluster.node("n1").clone();
    let applied_on_survivor: BTreeMap<String, u32> =
        acked.iter().map(|(k, v, _)| (k.clone(), *v)).collect();
    for (key, value) in &applied_on_survivor {
        assert_eq!(
            n1.get(key, Consistency::Linearizable).await.unwrap(),
            Some(value.to_le_bytes().to_vec()),
            "{key}"
        );
    }
    let members: Vec<String> = n1.members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(members, ["n1"]);
    n1.set("alone", vec![1], WriteOptions::default())
        .await
        .unwrap();
    // A second start with the option left on does nothing more.
    cluster.kill("n1").await;
    cluster.launch("n1").await.unwrap();
    cluster.wait_for_leader_among(&["n1"]).await;
    let n1 = cluster.node("n1").clone();
    assert_eq!(
        n1.get("alone", Consistency::Linearizable).await.unwrap(),
        Some(vec![1])
    );

    // Phase 4: the cluster grows back to three, from empty directories: each joins as a
    // learner and is promoted once it caught up (a voter that has not would cost the quorum).
    for name in ["n2", "n3"] {
        let config = cluster.config_mut(name);
        config.join = true;
        config.peers = [("n1".to_string(), n1.url().to_string())].into();
        cluster.launch(name).await.unwrap();
        let url = cluster.node(name).url().to_string();
        let add = MembershipChange::Add {
            name: name.into(),
            url,
            learner: true,
        };
        n1.change_membership(add, DEADLINE).await.unwrap();
        let node = cluster.node(name).clone();
        wait_until(DEADLINE, || {
            (node.status().applied_index >= n1.status().commit_index).then_some(())
        })
        .await
        .unwrap();
        // The leader promotes a learner it sees caught up.
        wait_until(DEADLINE, || {
            let seen = n1.members().into_iter().find(|m| m.name == name)?;
            (seen.match_index? >= n1.status().commit_index
                && seen.health == raftline::Health::Healthy)
                .then_some(())
        })
        .await
        .unwrap();
        let promote = MembershipChange::Promote { name: name.into() };
        n1.change_membership(promote, DEADLINE).await.unwrap();
    }
    cluster.wait_for_leader().await;
    let expected = n1.entries("", Consistency::Linearizable).await.unwrap();
    for name in ["n2", "n3"] {
        let node = cluster.node(name).clone();
        wait_until(DEADLINE, || {
            (node.status().applied_index >= n1.status().commit_index).then_some(())
        })
        .await;
        assert_eq!(
            node.entries("", Consistency::Local).await.unwrap(),
            expected,
            "{name} caught up"
        );
    }
    cluster.stop().await;
}
