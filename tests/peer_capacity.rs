//! Connection capacity that an attacker cannot take from the members. Before: 52 raw sockets
//! from each of 5 local addresses filled every node's 256 connection slots, each holding its
//! slot for the handshake's time limit and reopened at once; after the leader was killed no
//! new leader was elected for as long as the sockets were held (the survivors could not
//! connect to each other to vote).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast, random_secret, Cluster, TempDir, DEADLINE};
use raftline::config::Secret;
use raftline::WriteOptions;
use tokio::io::AsyncReadExt;

/// Sockets per source address and target, as in the finding.
const SOCKETS: usize = 52;
/// Source addresses 127.0.0.2 ..= 127.0.0.6.
const ADDRESSES: u8 = 5;

/// Raw sockets that say nothing, reopened the moment the node closes one, from several
/// addresses, on a runtime of their own (one thread: the flood competes with the cluster
/// for the machine's cores as another process would).
struct Flood {
    stop: Arc<AtomicBool>,
    /// Connections made so far (each held until the node closes it, then made again).
    made: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(targets: Vec<SocketAddr>) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let (stop2, made2) = (Arc::clone(&stop), Arc::clone(&made));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for target in targets {
                    for a in 2..2 + ADDRESSES {
                        for _ in 0..SOCKETS {
                            let (stop, made) = (Arc::clone(&stop2), Arc::clone(&made2));
                            tasks.spawn(hold(target, IpAddr::from([127, 0, 0, a]), stop, made));
                        }
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
        });
        Flood {
            stop,
            made,
            thread: Some(thread),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Holds one socket from `source` to `target`, reopening it whenever it is closed.
async fn hold(target: SocketAddr, source: IpAddr, stop: Arc<AtomicBool>, made: Arc<AtomicUsize>) {
    while !stop.load(Ordering::SeqCst) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let Ok(mut tcp) = socket.connect(target).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        made.fetch_add(1, Ordering::SeqCst);
        let mut byte = [0u8; 1];
        // Until the node closes it (or the flood ends).
        let _ = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut byte)).await;
        while !stop.load(Ordering::SeqCst)
            && tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut byte))
                .await
                .is_err()
        {}
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sockets_from_five_addresses_filling_the_cap_a_new_leader_is_elected_in_3_s() {
    let dir = TempDir::new("capacity");
    let secret = random_secret();
    let data = dir.0.clone();
    let mut cluster = Cluster::start(3, move |c| {
        fast(c);
        c.secret = Some(Secret::new(secret.as_str()));
        c.data_dir = Some(data.join(&c.name));
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let survivors: Vec<String> = cluster
        .names
        .iter()
        .filter(|n| **n != leader)
        .cloned()
        .collect();

    // Phase 1: the survivors hold no connection to each other (they restarted, and have
    // only answered the leader since), so electing a new leader needs new handshakes.
    let opts = WriteOptions {
        timeout: DEADLINE,
        ..Default::default()
    };
    for name in &survivors {
        for attempt in 0.. {
            cluster.kill(name).await;
            cluster.launch(name).await.expect("relaunch");
            let mark = cluster
                .node(&leader)
                .set("mark", vec![1], opts)
                .await
                .expect("write");
            let node = cluster.node(name).clone();
            common::wait_until(DEADLINE, || {
                (node.status().applied_index >= mark.index).then_some(())
            })
            .await
            .expect("the relaunched follower catches up");
            let outbound = node
                .transport_stats()
                .connections_open
                .load(Ordering::Relaxed);
            if outbound == 1 {
                break;
            }
            assert!(attempt < 5, "{name} keeps {outbound} connections");
        }
    }

    // Phase 2: the flood fills every survivor's connection slots (over the 256 the nodes
    // held before, and far over the handshakes they hold now), and keeps them full.
    let targets = survivors
        .iter()
        .map(|n| addr_of(cluster.node(n).url()))
        .collect();
    let flood = Flood::start(targets);
    let wanted = 2 * SOCKETS * usize::from(ADDRESSES);
    common::wait_until(DEADLINE, || {
        (flood.made.load(Ordering::SeqCst) >= 2 * wanted).then_some(())
    })
    .await
    .expect("the flood holds its sockets");

    // Phase 3: the leader dies; the survivors elect one of them within 3 s.
    cluster.kill(&leader).await;
    let killed = Instant::now();
    let among: Vec<&str> = survivors.iter().map(String::as_str).collect();
    let elected = tokio::time::timeout(
        Duration::from_secs(3),
        cluster.wait_for_leader_among(&among),
    )
    .await;
    let took = killed.elapsed();
    let new_leader = elected.unwrap_or_else(|_| {
        panic!(
            "no leader within 3 s under the flood: {:?}",
            cluster.describe()
        )
    });
    eprintln!("new leader {new_leader} after {took:?} under a flood of {wanted} sockets");
    cluster
        .node(&new_leader)
        .set("after", vec![2], opts)
        .await
        .expect("the new leader commits with the other survivor");
    drop(flood);
    cluster.stop().await;
}
