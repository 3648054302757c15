//! Clusters over real WebSockets on 127.0.0.1: election, replication order, linearizable
//! follower reads, failover after a leader is killed, and a leader partitioned away.

mod common;

use std::time::{Duration, Instant};

use common::{fast, wait_until, Cluster, DEADLINE};
use raftline::{BatchOp, Config, Consistency, Error, Role, WriteOptions};
use serde_bytes::ByteBuf;

fn opts() -> WriteOptions {
    WriteOptions::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_elects_itself_and_writes() {
    let cluster = Cluster::start(1, fast).await;
    assert_eq!(cluster.wait_for_leader().await, "n1");
    let n1 = cluster.node("n1");
    let out = n1.set("k", b"v".to_vec(), opts()).await.expect("write");
    assert!(out.index > 0);
    assert_eq!(
        n1.get("k", Consistency::Linearizable).await.unwrap(),
        Some(b"v".to_vec())
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_and_five_node_clusters_elect_exactly_one_leader() {
    for size in [3, 5] {
        let cluster = Cluster::start(size, |_| {}).await;
        let leader = cluster.wait_for_leader().await;
        let leaders: Vec<_> = cluster
            .live()
            .iter()
            .filter(|h| h.status().role == Role::Leader)
            .map(|h| h.name().to_string())
            .collect();
        assert_eq!(
            leaders,
            vec![leader.clone()],
            "size {size}: exactly one leader"
        );
        let term = cluster.node(&leader).status().term;
        for h in cluster.live() {
            assert_eq!(
                h.status().term,
                term,
                "size {size}: {} agrees on the term",
                h.name()
            );
        }
        cluster.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_every_node_apply_in_the_same_order_everywhere() {
    let cluster = Cluster::start(3, fast).await;
    cluster.wait_for_leader().await;
    let mut writers = Vec::new();
    for (i, name) in cluster.names.iter().enumerate() {
        let h = cluster.node(name).clone();
        writers.push(tokio::spawn(async move {
            for j in 0..40u32 {
                let key = format!("k{}", j % 7);
                let result = match j % 5 {
                    0 => h.set(&key, format!("{i}-{j}").into_bytes(), opts()).await,
                    1 => h.delete(&key, opts()).await,
                    2 => h.cas(&key, None, Some(vec![i as u8]), opts()).await,
                    3 => {
                        let ops = vec![
                            BatchOp::Set {
                                key: format!("b{i}"),
                                value: ByteBuf::from(vec![j as u8]),
                            },
                            BatchOp::Delete { key: key.clone() },
                        ];
                        h.batch(ops, opts()).await
                    }
                    _ => h.propose_raw(vec![i as u8, j as u8], opts()).await,
                };
                result.unwrap_or_else(|e| panic!("write {j} on node {i}: {e}"));
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let log = cluster.wait_converged().await;
    assert_eq!(
        log.len(),
        121,
        "every write applied exactly once, and the marker"
    );
    let reference = cluster.applied("n1");
    for name in &cluster.names {
        assert_eq!(
            cluster.applied(name),
            reference,
            "{name} applied the same entries, changes included"
        );
    }
    // The states are identical too.
    let state = cluster
        .node("n1")
        .entries("", Consistency::Local)
        .await
        .unwrap();
    for name in &cluster.names {
        assert_eq!(
            cluster
                .node(name)
                .entries("", Consistency::Local)
                .await
                .unwrap(),
            state,
            "{name} state"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_follower_read_sees_a_write_acknowledged_elsewhere() {
    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let followers: Vec<&String> = cluster.names.iter().filter(|n| **n != leader).collect();
    for i in 0..30u32 {
        // Alternate: write on the leader or on one follower, read on the other follower.
        let (writer, reader) = if i % 2 == 0 {
            (leader.as_str(), followers[0].as_str())
        } else {
            (followers[0].as_str(), followers[1].as_str())
        };
        let key = format!("lin{i}");
        cluster
            .node(writer)
            .set(&key, i.to_le_bytes().to_vec(), opts())
            .await
            .unwrap();
        let seen = cluster
            .node(reader)
            .get(&key, Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(
            seen,
            Some(i.to_le_bytes().to_vec()),
            "round {i}: {reader} reads {writer}'s write"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_fails_over_well_under_a_second() {
    let mut cluster = Cluster::start(3, fast).await;
    let old = cluster.wait_for_leader().await;
    cluster
        .node(&old)
        .set("before", b"1".to_vec(), opts())
        .await
        .unwrap();
    let killed_at = Instant::now();
    cluster.kill(&old).await;
    let survivor = cluster.other_than(&old);
    // Retry on the survivors until a write is accepted: that is the failover time.
    let accepted = loop {
        match cluster
            .node(&survivor)
            .set(
                "after",
                b"2".to_vec(),
                WriteOptions {
                    timeout: Duration::from_millis(50),
                    forward: true,
                },
            )
            .await
        {
            Ok(_) => break killed_at.elapsed(),
            Err(Error::NoLeader | Error::Timeout { .. } | Error::LeaderChanged { .. })
                if killed_at.elapsed() < DEADLINE =>
            {
                tokio::time::sleep(Duration::from_millis(2)).await
            }
            Err(e) => panic!("unexpected error during failover: {e}"),
        }
    };
    let new = cluster.wait_for_leader().await;
    assert_ne!(new, old);
    assert!(
        accepted < Duration::from_secs(1),
        "failover took {accepted:?}"
    );
    eprintln!("failover (leader killed -> write accepted): {accepted:?}");
    for h in cluster.live() {
        assert_eq!(
            h.get("before", Consistency::Linearizable).await.unwrap(),
            Some(b"1".to_vec()),
            "{}",
            h.name()
        );
    }
    cluster.stop().await;
}

/// Heartbeat 100 ms, election 1-2 s: any election sooner than a second after the leader
/// was last heard is the early failover's.
fn slow(config: &mut Config) {
    config.heartbeat = Duration::from_millis(100);
    config.election_timeout = Duration::from_secs(1);
}

/// Phase 1: a leader is killed (its port released, as when its process dies). Phase 2: its
/// followers find its address refusing them and elect a new leader within 400 ms, where
/// their one-second election timers would have taken a second or more. Three rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_before_any_election_timer_runs_out() {
    for round in 0..3 {
        let mut cluster = Cluster::start(3, slow).await;
        let old = cluster.wait_for_leader().await;
        let term = cluster.node(&old).status().term;
        cluster
            .node(&old)
            .set("k", b"1".to_vec(), opts())
            .await
            .unwrap();
        let killed_at = Instant::now();
        cluster.kill(&old).await;
        let new = wait_until(DEADLINE, || {
            cluster
                .live()
                .iter()
                .find(|h| h.status().role == Role::Leader)
                .map(|h| h.name().to_string())
        })
        .await
        .expect("a new leader");
        let took = killed_at.elapsed();
        eprintln!("round {round}: {old} killed -> {new} leads after {took:?}");
        assert!(
            took < Duration::from_millis(400),
            "round {round}: took {took:?}"
        );
        assert_eq!(cluster.node(&new).status().term, term + 1, "round {round}");
        cluster.stop().await;
    }
}

/// A live leader whose connection to a follower breaks (here: it redials the follower,
/// as after a URL change) keeps leading: the follower finds the leader's address
/// answering, and nothing is elected. Twenty breaks under writes; every node stays in the
/// leader's term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_link_to_a_follower_breaks_keeps_leading() {
    let cluster = Cluster::start(3, slow).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.other_than(&leader);
    let url = cluster.node(&follower).url().to_string();
    let term = cluster.node(&leader).status().term;
    for i in 0..20u32 {
        cluster.node(&leader).set_peer_url(&follower, &url).unwrap();
        cluster
            .node(&follower)
            .set("k", i.to_le_bytes().to_vec(), opts())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for h in cluster.live() {
        let s = h.status();
        assert_eq!(s.term, term, "{}: {s:?}", h.name());
        assert_eq!(s.leader.as_deref(), Some(leader.as_str()), "{}", h.name());
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_steps_down_and_rejoins_as_follower() {
    let cluster = Cluster::start(3, fast).await;
    let old = cluster.wait_for_leader().await;
    cluster
        .node(&old)
        .set("k", b"before".to_vec(), opts())
        .await
        .unwrap();
    let confirmed = cluster
        .node(&old)
        .wait_for(DEADLINE, |s| s.is_leader())
        .await;
    assert!(confirmed.is_ok(), "leader {old} confirms its lease");
    let majority: Vec<&str> = cluster
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != old)
        .collect();
    cluster.partition(&[old.as_str()], &majority);

    // check-quorum: the cut-off leader steps down on its own.
    let stepped_down = wait_until(DEADLINE, || {
        (cluster.node(&old).status().role != Role::Leader).then_some(())
    })
    .await;
    assert!(
        stepped_down.is_some(),
        "old leader {old} still leads: {:?}",
        cluster.describe()
    );
    let new = cluster.wait_for_leader_among(&majority).await;
    assert_ne!(new, old);
    // Fencing: the old leader's lease ran out before anyone else was elected.
    {
        // Events reach the recorder task asynchronously: wait for both.
        let recorded = wait_until(DEADLINE, || {
            let record = cluster.record.lock().unwrap();
            let lost = record
                .leases
                .iter()
                .rev()
                .find(|(_, n, held)| *n == old && !held);
            let elected = record.elected.iter().find(|(_, n, _)| *n == new);
            lost.map(|l| l.0).zip(elected.map(|e| e.0))
        })
        .await;
        let (lost, elected) =
            recorded.expect("old leader lost its lease and a new one was elected");
        assert!(
            lost < elected,
            "lease of {old} outlived the election of {new} by {:?}",
            lost - elected
        );
        eprintln!("lease lost {:?} before the new election", elected - lost);
    }
    assert!(
        cluster
            .node(&new)
            .wait_for(DEADLINE, |s| s.is_leader())
            .await
            .is_ok(),
        "new leader confirms its lease"
    );
    assert!(!cluster.node(&old).status().is_leader());
    for i in 0..10u32 {
        cluster
            .node(majority[i as usize % 2])
            .set(&format!("m{i}"), vec![i as u8], opts())
            .await
            .unwrap();
    }
    // The old leader cannot serve a linearizable read while cut off.
    assert!(cluster
        .node(&old)
        .get("k", Consistency::Linearizable)
        .await
        .is_err());

    cluster.heal();
    let after = cluster.wait_for_leader().await;
    assert_ne!(
        after, old,
        "pre-vote: the returning node must not depose the leader"
    );
    cluster
        .node(&old)
        .set("healed", b"yes".to_vec(), opts())
        .await
        .unwrap();
    let log = cluster.wait_converged().await;
    assert_eq!(log.len(), 13, "the writes and wait_converged's marker");
    assert_eq!(cluster.node(&old).get_local("m9"), Some(vec![9]));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_happened() {
    let cluster = Cluster::start(3, |c| {
        fast(c);
        c.max_proposal_bytes = 1024;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.other_than(&leader);
    let f = cluster.node(&follower);

    // (case, result, expected code)
    let no_forward = WriteOptions {
        forward: false,
        ..opts()
    };
    let cases = vec![
        (
            "follower write without forwarding",
            f.set("k", vec![1], no_forward).await.map(|_| ()),
            "ERR_NOT_LEADER",
        ),
        (
            "oversized proposal",
            f.set("k", vec![0; 2048], opts()).await.map(|_| ()),
            "ERR_TOO_LARGE",
        ),
        (
            "empty key",
            f.set("", vec![1], opts()).await.map(|_| ()),
            "ERR_INVALID",
        ),
        (
            "transfer from a follower",
            f.transfer_leadership(None, DEADLINE).await.map(|_| ()),
            "ERR_NOT_LEADER",
        ),
    ];
    for (case, result, code) in cases {
        assert_eq!(result.expect_err(case).code(), code, "{case}");
    }
    match f.set("k", vec![1], no_forward).await {
        Err(Error::NotLeader { leader: l }) => {
            assert_eq!(l.as_deref(), Some(leader.as_str()), "names the leader")
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // Cut off, the follower soon knows it has no leader: writes and reads wait for one
    // until their deadline, then say that none was known (nothing was proposed).
    let others: Vec<&str> = cluster
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != follower)
        .collect();
    cluster.partition(&[follower.as_str()], &others);
    let leaderless = wait_until(DEADLINE, || f.status().leader.is_none().then_some(())).await;
    assert!(leaderless.is_some(), "isolated follower forgets the leader");
    let wait = Duration::from_millis(300);
    let short = WriteOptions {
        timeout: wait,
        forward: true,
    };
    let started = Instant::now();
    assert_eq!(
        f.set("k", vec![1], short).await.unwrap_err(),
        Error::NoLeader
    );
    let read = raftline::ReadOptions {
        consistency: Consistency::Linearizable,
        timeout: wait,
    };
    assert_eq!(f.get("k", read).await.unwrap_err(), Error::NoLeader);
    let took = started.elapsed();
    assert!(
        took >= wait * 2 && took < wait * 2 + Duration::from_secs(1),
        "each waited for its deadline, together {took:?}"
    );
    // A write issued while leaderless goes through once a leader is known again.
    let pending = {
        let f = f.clone();
        tokio::spawn(async move { f.set("late", vec![2], opts()).await })
    };
    cluster.heal();
    cluster.wait_for_leader().await;
    pending
        .await
        .unwrap()
        .expect("a write waiting for a leader commits once there is one");

    // A write whose deadline passes reports an unknown outcome.
    let leader_handle = cluster.node(&cluster.wait_for_leader().await).clone();
    cluster.partition(
        &[leader_handle.name()],
        &others
            .iter()
            .copied()
            .filter(|n| *n != leader_handle.name())
            .chain([follower.as_str()])
            .collect::<Vec<_>>(),
    );
    let short = WriteOptions {
        timeout: Duration::from_millis(20),
        forward: true,
    };
    match leader_handle.set("maybe", vec![1], short).await {
        Err(
            e @ Error::Timeout {
                unknown_outcome: true,
                ..
            },
        ) => assert_eq!(e.code(), "ERR_TIMEOUT"),
        Err(Error::NoLeader) => {} // it had already stepped down: never proposed
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    cluster.heal();

    // Stopped nodes refuse work and release their port.
    let addr = f.local_addr();
    f.stop().await;
    assert_eq!(
        f.set("k", vec![1], opts()).await.unwrap_err(),
        Error::Stopped
    );
    assert_eq!(f.status().role, Role::Stopped);
    std::net::TcpListener::bind(addr).expect("the stopped node's port is free again");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_forwarded_to_a_dead_leader_settle_long_before_their_deadline() {
    let mut cluster = Cluster::start(3, fast).await;
    let old = cluster.wait_for_leader().await;
    let survivor = cluster.other_than(&old);
    cluster.kill(&old).await;
    // The survivor still believes in the dead leader: these are forwarded into the void.
    let h = cluster.node(&survivor).clone();
    let started = Instant::now();
    let writes: Vec<_> = (0..10)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.set(&format!("w{i}"), vec![i], opts()).await })
        })
        .collect();
    let mut applied = 0;
    for w in writes {
        match w.await.unwrap() {
            Ok(_) => applied += 1,
            Err(e @ Error::LeaderChanged { .. }) => assert_eq!(e.code(), "ERR_TIMEOUT"),
            Err(e) => panic!("expected success or a leader change, got {e}"),
        }
    }
    let settled = started.elapsed();
    eprintln!("10 writes settled {settled:?} after the kill ({applied} applied)");
    assert!(
        settled < Duration::from_secs(2),
        "writes waited for their 5 s deadline: {settled:?}"
    );
    cluster.wait_for_leader().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_sees_an_isolated_follower_turn_unhealthy_then_healthy() {
    use raftline::Health;
    let cluster = Cluster::start(3, fast).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.other_than(&leader);
    let health_of = |peer: &str| {
        cluster
            .node(&leader)
            .members()
            .into_iter()
            .find(|m| m.name == peer)
            .map(|m| m.health)
    };
    let healthy = wait_until(DEADLINE, || {
        (health_of(&follower) == Some(Health::Healthy)).then_some(())
    })
    .await;
    assert!(healthy.is_some(), "follower healthy at first");
    let others: Vec<&str> = cluster
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != follower)
        .collect();
    cluster.partition(&[follower.as_str()], &others);
    let unhealthy = wait_until(DEADLINE, || {
        (health_of(&follower) == Some(Health::Unhealthy)).then_some(())
    })
    .await;
    assert!(
        unhealthy.is_some(),
        "isolated follower turns unhealthy on the leader"
    );
    let view = cluster
        .node(&leader)
        .members()
        .into_iter()
        .find(|m| m.name == follower)
        .unwrap();
    assert!(
        view.last_contact.unwrap() >= Duration::from_millis(50),
        "{view:?}"
    );
    cluster.heal();
    let healed = wait_until(DEADLINE, || {
        (health_of(&follower) == Some(Health::Healthy)).then_some(())
    })
    .await;
    assert!(healed.is_some(), "healed follower turns healthy again");
    // The events tell the same story, in order (they reach the recorder asynchronously).
    let story = wait_until(DEADLINE, || {
        let record = cluster.record.lock().unwrap();
        let seen: Vec<Health> = record
            .health
            .iter()
            .filter(|(observer, peer, _)| *observer == leader && *peer == follower)
            .map(|(_, _, h)| *h)
            .collect();
        let unhealthy_at = seen.iter().position(|h| *h == Health::Unhealthy)?;
        seen[unhealthy_at..]
            .contains(&Health::Healthy)
            .then_some(seen)
    })
    .await;
    assert!(
        story.is_some(),
        "unhealthy then healthy events on the leader"
    );
    // Followers do not judge health.
    let on_follower = cluster.node(&follower).members();
    assert!(
        on_follower
            .iter()
            .all(|m| m.health == Health::Unknown && m.match_index.is_none()),
        "{on_follower:?}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_stay_open() {
    // With fast timing a connection silent for 2 s is closed, and a dialer with nothing to
    // send pings every 500 ms. The pongs once made dialers drop their connection: every
    // idle link was redialled twice a second.
    let cluster = Cluster::start(3, fast).await;
    let first = cluster.wait_for_leader().await;
    // The first leader dialled both others; once it follows, its link to the other
    // follower carries nothing.
    let next = cluster.other_than(&first);
    cluster
        .node(&first)
        .transfer_leadership(Some(&next), DEADLINE)
        .await
        .expect("transfer");
    assert_eq!(cluster.wait_for_leader().await, next);
    // (connections opened so far, connections open now)
    let links = |c: &Cluster| -> (u64, u64) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        c.live().iter().fold((0, 0), |(opened, open), h| {
            let stats = h.transport_stats();
            (
                opened + load(&stats.connections_opened),
                open + load(&stats.connections_open),
            )
        })
    };
    let before = links(&cluster);
    assert!(
        before.1 >= 5,
        "the old leader's links and the new leader's: {before:?}"
    );
    // Idle for four ping periods and past the idle timeout: the time is the test.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A link never used before may be dialled meanwhile (dialers are lazy); none may be
    // closed, or closed and dialled again.
    let after = links(&cluster);
    assert_eq!(
        after.0 - after.1,
        before.0 - before.1,
        "idle links were closed or redialled: {before:?} -> {after:?}"
    );
    assert!(after.1 >= before.1, "{before:?} -> {after:?}");
    cluster.stop().await;
}
