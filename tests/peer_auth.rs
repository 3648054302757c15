//! Peer authentication over real sockets: with a shared secret, members prove it to each
//! other in the handshake; a peer without it, or with another, never gets a Welcome, and its
//! attempts change nothing in the cluster. A node with a secret also refuses a listener that
//! does not prove it.

mod common;

use std::time::Duration;

use common::{fast, Cluster, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use raftline::config::Secret;
use raftline::transport::wire::{Frame, PROTOCOL_VERSION};
use raftline::{Config, Role, WriteOptions};
use serde_bytes::ByteBuf;
use tokio_tungstenite::tungstenite::Message as Ws;

fn with_secret(secret: &'static str) -> impl Fn(&mut Config) {
    move |c| {
        fast(c);
        c.secret = Some(Secret::new(secret));
    }
}

fn hello(from: &str, to: &str) -> Ws {
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: "raftline".into(),
        from: from.into(),
        to: to.into(),
        nonce: ByteBuf::from(vec![5; 32]),
        http_url: String::new(),
    };
    Ws::Binary(hello.encode().into())
}

/// Every frame the listener sends until it closes the connection (or 10 s pass).
async fn answers(
    ws: &mut (impl StreamExt<Item = Result<Ws, impl std::fmt::Debug>> + Unpin),
) -> Vec<String> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Ws::Binary(bytes) => seen.push(format!("{:?}", Frame::decode(&bytes))),
                Ws::Close(frame) => {
                    seen.push(format!(
                        "close: {}",
                        frame.map(|f| f.reason.to_string()).unwrap_or_default()
                    ));
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_the_secret_form_a_cluster_and_impostors_never_get_a_welcome() {
    let cluster = Cluster::start(3, with_secret("correct horse battery staple")).await;
    let leader = cluster.wait_for_leader().await;
    let lead = cluster.node(&leader).clone();
    lead.set("before", vec![1], WriteOptions::default())
        .await
        .expect("an authenticated cluster writes");
    let term = lead.status().term;
    let target = cluster.other_than(&leader);
    let url = cluster.node(&target).url().to_string();

    // (case, what the impostor sends after the Hello)
    let cases: Vec<(&str, Option<Frame>)> = vec![
        ("no proof at all", None),
        (
            "a made-up proof",
            Some(Frame::Proof {
                proof: ByteBuf::from(vec![0; 32]),
            }),
        ),
        ("raft traffic instead of a proof", Some(Frame::raft(&[]))),
        (
            "a welcome of its own",
            Some(Frame::Welcome {
                version: PROTOCOL_VERSION,
            }),
        ),
    ];
    for (case, then) in cases {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("upgrade");
        // It even claims to be the leader, a real member.
        ws.send(hello(&leader, &target)).await.unwrap();
        if let Some(frame) = then {
            let _ = ws.send(Ws::Binary(frame.encode().into())).await;
        }
        let seen = answers(&mut ws).await;
        assert!(
            seen.iter().all(|s| !s.contains("Welcome")),
            "{case}: an impostor was welcomed: {seen:?}"
        );
        assert!(
            seen.first().is_some_and(|s| s.contains("Challenge")),
            "{case}: the listener challenges first: {seen:?}"
        );
        assert!(
            seen.iter().all(|s| !s.contains(target.as_str())),
            "{case}: the refusal names this node to an unauthenticated peer: {seen:?}"
        );
    }
    // A wrong receiver is refused without learning who answered.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("upgrade");
    ws.send(hello("someone", "guess")).await.unwrap();
    let seen = answers(&mut ws).await;
    assert!(
        seen.iter().all(|s| !s.contains(target.as_str())),
        "{seen:?}"
    );

    // A node with another secret can talk to nobody and changes nothing.
    let mut intruder = Config::new("n9");
    fast(&mut intruder);
    intruder.listen = Some("127.0.0.1:0".into());
    intruder.secret = Some(Secret::new("a guess that is long enough"));
    intruder.peers = cluster.live_urls();
    intruder.peers.insert("n9".into(), String::new());
    let node = raftline::start(intruder).await.expect("starts");
    let odd = node.handle();
    lead.set("after", vec![2], WriteOptions::default())
        .await
        .expect("still writes");
    let leader_again = cluster.wait_for_leader().await;
    assert_eq!(leader_again, leader, "the leader stays");
    assert_eq!(lead.status().term, term, "the term did not move");
    assert_eq!(
        odd.status().leader,
        None,
        "the intruder never hears from a member"
    );
    assert_ne!(odd.status().role, Role::Leader);
    node.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_secret_refuses_a_listener_that_does_not_prove_it() {
    // A fake peer that welcomes anyone, as a listener without the secret would.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_url = format!("ws://{}", fake.local_addr().unwrap());
    let mut config = Config::new("n1");
    with_secret("s3cret-s3cret-s3cret")(&mut config);
    config.listen = Some("127.0.0.1:0".into());
    config.peers.insert("n1".into(), String::new());
    config.peers.insert("n2".into(), fake_url);
    let node = raftline::start(config).await.expect("starts");
    let (tcp, _) = tokio::time::timeout(DEADLINE, fake.accept())
        .await
        .expect("the node dials its peer")
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
    let Some(Ok(Ws::Binary(first))) = ws.next().await else {
        panic!("expected a Hello");
    };
    assert!(matches!(Frame::decode(&first), Ok(Frame::Hello { .. })));
    let welcome = Frame::Welcome {
        version: PROTOCOL_VERSION,
    };
    ws.send(Ws::Binary(welcome.encode().into())).await.unwrap();
    // The node must hang up rather than send raft traffic to an unproven peer.
    let next = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("the node hangs up");
    assert!(
        !matches!(next, Some(Ok(Ws::Binary(_)))),
        "raft traffic went to a peer that never proved the secret: {next:?}"
    );
    node.stop().await;
}

/// Before: each step of the handshake had 5 s of its own, so a dialer pacing itself held its
/// slot about 15 s. Now the upgrade and the handshake share one 5 s budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_that_paces_its_handshake_is_closed_within_the_5_s_budget() {
    let cluster = Cluster::start(1, with_secret("correct horse battery staple")).await;
    let url = cluster.node("n1").url().to_string();
    let started = std::time::Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    // Just inside what one step used to allow, then the Hello; then no proof.
    tokio::time::sleep(Duration::from_secs(4)).await;
    ws.send(hello("n9", "n1")).await.unwrap();
    let seen = answers(&mut ws).await;
    let held = started.elapsed();
    assert!(
        held < Duration::from_millis(6_000),
        "held its slot {held:?}: {seen:?}"
    );
    assert!(
        seen.last().is_some_and(|s| s.starts_with("close")),
        "{seen:?}"
    );
    cluster.stop().await;
}
