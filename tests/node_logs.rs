//! Every node of a process logs at its own level to its own sink, and every line names the
//! node it came from (the raft crate's lines included).

mod common;

use std::sync::{Arc, Mutex};

use common::{fast, wait_until, Cluster, DEADLINE};
use raftline::logging::{LogLine, LogSink};
use raftline::WriteOptions;
use tracing::level_filters::LevelFilter;
use tracing::Level;

/// (level, node, target, message) of each line a sink received.
type Lines = Arc<Mutex<Vec<(Level, String, String, String)>>>;

fn capture(lines: &Lines) -> LogSink {
    let lines = Arc::clone(lines);
    LogSink::new(move |line: &LogLine<'_>| {
        lines.lock().unwrap().push((
            line.level,
            line.node.to_string(),
            line.target.to_string(),
            line.message.to_string(),
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_logs_at_its_own_level_to_its_own_sink() {
    common::init_tracing();
    let sinks: Vec<Lines> = (0..3).map(|_| Lines::default()).collect();
    let levels = [LevelFilter::DEBUG, LevelFilter::ERROR, LevelFilter::OFF];
    let cluster = Cluster::start(3, |config| {
        let i = config.name[1..].parse::<usize>().unwrap() - 1;
        fast(config);
        config.log_level = levels[i];
        config.log_sink = Some(capture(&sinks[i]));
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    cluster
        .node(&leader)
        .set("k", b"v".to_vec(), WriteOptions::default())
        .await
        .expect("write");
    cluster.wait_converged().await;

    let debug = sinks[0].lock().unwrap().clone();
    // n1 at debug: its connections and the raft crate's role changes.
    assert!(
        debug.iter().any(|(level, ..)| *level == Level::DEBUG),
        "{debug:?}"
    );
    assert!(
        debug.iter().any(|(_, _, target, _)| target == "raft"),
        "{debug:?}"
    );
    assert!(debug.iter().all(|(level, ..)| *level <= Level::DEBUG));
    assert!(debug.iter().all(|(_, node, ..)| node == "n1"), "{debug:?}");
    // n2 at error and n3 off: the same events happened there, and nothing came through.
    let error = sinks[1].lock().unwrap().clone();
    assert!(
        error.iter().all(|(level, ..)| *level == Level::ERROR),
        "{error:?}"
    );
    assert!(sinks[2].lock().unwrap().is_empty());
    cluster.stop().await;
}

/// A dialer that goes away in the middle of its upgrade (a member stopping or redialling, a
/// port probe) is logged at debug; one that sends something that is no upgrade, at warn.
/// Before: both at warn, and a cluster stopping all at once logged such lines at random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_that_leaves_mid_upgrade_is_no_warning_but_a_wrong_request_is() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    common::init_tracing();
    let lines = Lines::default();
    let cluster = Cluster::start(1, |config| {
        fast(config);
        config.log_level = LevelFilter::DEBUG;
        config.log_sink = Some(capture(&lines));
    })
    .await;
    let addr = cluster
        .node("n1")
        .url()
        .trim_start_matches("ws://")
        .to_string();
    let logged = |level: Level, text: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(l, _, _, message)| *l == level && message.contains(text))
    };

    // Phase 1: half an HTTP upgrade, then the connection closes.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: n1\r\n")
        .await
        .unwrap();
    drop(tcp);
    wait_until(DEADLINE, || {
        logged(Level::DEBUG, "left during the upgrade").then_some(())
    })
    .await
    .expect("the dialer's leaving is logged at debug");

    // Phase 2: a whole request, but no WebSocket upgrade.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: n1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    wait_until(DEADLINE, || {
        logged(Level::WARN, "not a WebSocket upgrade").then_some(())
    })
    .await
    .expect("a wrong request is logged at warn");
    assert!(
        !logged(Level::WARN, "Handshake not finished"),
        "{:?}",
        lines.lock().unwrap()
    );
    cluster.stop().await;
}
