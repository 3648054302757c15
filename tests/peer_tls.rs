//! TLS on the peer port over real sockets: members with certificates from the cluster's CA
//! form a cluster over `wss://` (with and without a secret as well); a plain-text peer, a
//! peer without a client certificate and one whose certificate another CA signed never
//! get past TLS, and the cluster goes on unchanged. Certificates: tests/fixtures/tls.

mod common;

use std::sync::Arc;

use common::{fast, random_secret, Cluster, DEADLINE};
use raftline::config::{Secret, TlsFiles};
use raftline::{Config, WriteOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn member_tls() -> TlsFiles {
    TlsFiles {
        cert: fixture("member.pem"),
        key: Secret::new(fixture("member-key.pem")),
        ca: Some(fixture("ca.pem")),
    }
}

fn with_tls(c: &mut Config) {
    fast(c);
    c.tls = Some(member_tls());
}

/// A TLS client that trusts the cluster's CA and presents `identity` (a certificate and
/// key file pair of the fixtures), or no certificate at all.
fn client(identity: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&fixture("ca.pem")) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(&fixture(cert))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(&fixture(key)).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Dials `addr` with `connector`, sends an HTTP upgrade request, and reports whether any
/// answer came back (a listener that accepted the TLS client answers the upgrade).
async fn upgrade_answered(addr: &str, connector: tokio_rustls::TlsConnector) -> bool {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return false;
    };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    if tls.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, tls.read(&mut answer)).await,
        Ok(Ok(n)) if n > 0 && answer.starts_with(b"HTTP/1.1 101")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_over_tls_and_peers_without_the_cas_certificate_get_nowhere() {
    let cluster = Cluster::start(3, with_tls).await;
    let leader = cluster.wait_for_leader().await;
    let lead = cluster.node(&leader).clone();
    assert!(lead.url().starts_with("wss://"), "{}", lead.url());
    lead.set("over tls", b"1".to_vec(), WriteOptions::default())
        .await
        .expect("a TLS cluster writes");
    let term = lead.status().term;
    let target = cluster.other_than(&leader);
    let addr = cluster
        .node(&target)
        .url()
        .trim_start_matches("wss://")
        .to_string();

    // The control: a client with a member's certificate gets the WebSocket upgrade.
    assert!(upgrade_answered(&addr, client(Some(("member.pem", "member-key.pem")))).await);
    // No client certificate, or one of another CA: refused in the TLS handshake.
    assert!(!upgrade_answered(&addr, client(None)).await);
    assert!(!upgrade_answered(&addr, client(Some(("stranger.pem", "stranger-key.pem")))).await);
    // Plain text: the WebSocket upgrade never happens.
    let plain = tokio_tungstenite::connect_async(format!("ws://{addr}")).await;
    assert!(plain.is_err(), "a plain-text peer was upgraded");

    lead.set("after", b"2".to_vec(), WriteOptions::default())
        .await
        .expect("still writes");
    assert_eq!(cluster.wait_for_leader().await, leader);
    assert_eq!(lead.status().term, term, "the term did not move");
    cluster.wait_converged().await;
    cluster.stop().await;
}

/// Before: any certificate the cluster's CA signed could speak for any member. Now the
/// listener checks that the dialer's certificate names the member it claims to be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_certificate_cannot_speak_for_another_member() {
    use futures_util::{SinkExt, StreamExt};
    use raftline::transport::wire::{Frame, PROTOCOL_VERSION};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let cluster = Cluster::start(3, with_tls).await;
    let leader = cluster.wait_for_leader().await;
    let target = cluster.other_than(&leader);
    let claimed = cluster
        .names
        .iter()
        .find(|n| **n != target && **n != leader)
        .unwrap()
        .clone();
    let addr = cluster
        .node(&target)
        .url()
        .trim_start_matches("wss://")
        .to_string();
    // Speaks as `claimed` with the certificate of `identity`; returns how it ended.
    let speak_as = |identity: (&'static str, &'static str)| {
        let (addr, claimed) = (addr.clone(), claimed.clone());
        let target = target.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let tls = client(Some(identity)).connect(name, tcp).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}"), tls)
                .await
                .unwrap();
            let hello = Frame::Hello {
                version: PROTOCOL_VERSION,
                cluster_id: "raftline".into(),
                from: claimed,
                to: target,
                nonce: serde_bytes::ByteBuf::from(vec![7; 32]),
                http_url: String::new(),
            };
            ws.send(Ws::Binary(hello.encode().into())).await.unwrap();
            match tokio::time::timeout(DEADLINE, ws.next()).await {
                Ok(Some(Ok(Ws::Close(Some(close))))) => format!("closed: {}", close.reason),
                Ok(Some(Ok(Ws::Binary(b)))) => format!("answered: {:?}", Frame::decode(&b)),
                other => format!("ended: {other:?}"),
            }
        }
    };
    let ended = speak_as(("elsewhere.pem", "elsewhere-key.pem")).await;
    assert!(
        ended.contains("certificate names neither"),
        "a certificate for another host: {ended}"
    );
    // The control: the certificate that names 127.0.0.1 passes this check (and then meets
    // the one-connection-per-member rule or a Welcome).
    let ended = speak_as(("member.pem", "member-key.pem")).await;
    assert!(!ended.contains("certificate"), "{ended}");
    cluster
        .node(&leader)
        .set("after", b"1".to_vec(), WriteOptions::default())
        .await
        .expect("still writes");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_secret_work_together_and_a_stranger_node_cannot_join_in() {
    let secret = random_secret();
    let cluster = Cluster::start(3, |c: &mut Config| {
        with_tls(c);
        c.secret = Some(Secret::new(secret.as_str()));
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let lead = cluster.node(&leader).clone();
    lead.set("both", b"1".to_vec(), WriteOptions::default())
        .await
        .expect("writes with TLS and a secret");

    // A node with the secret but a certificate of another CA talks to nobody.
    let mut stranger = Config::new("n9");
    fast(&mut stranger);
    stranger.listen = Some("127.0.0.1:0".into());
    stranger.secret = Some(Secret::new(secret.as_str()));
    stranger.tls = Some(TlsFiles {
        cert: fixture("stranger.pem"),
        key: Secret::new(fixture("stranger-key.pem")),
        ca: Some(fixture("stranger-ca.pem")),
    });
    stranger.peers = cluster.live_urls();
    stranger.peers.insert("n9".into(), String::new());
    let node = raftline::start(stranger).await.expect("starts");
    lead.set("after", b"2".to_vec(), WriteOptions::default())
        .await
        .expect("still writes");
    assert_eq!(
        node.handle().status().leader,
        None,
        "the stranger hears no one"
    );
    node.stop().await;
    cluster.wait_converged().await;
    cluster.stop().await;
}

#[test]
fn bad_tls_material_is_refused_with_a_reason() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let start = |tls: TlsFiles| {
        let mut config = Config::new("n1");
        config.listen = Some("127.0.0.1:0".into());
        config.peers.insert("n1".into(), String::new());
        config.tls = Some(tls);
        runtime
            .block_on(raftline::start(config))
            .err()
            .map(|e| e.to_string())
    };
    let cases = [
        (
            TlsFiles {
                cert: b"not pem".to_vec(),
                ..member_tls()
            },
            "tls.cert holds no certificate",
        ),
        (
            TlsFiles {
                key: Secret::new(fixture("stranger-key.pem")),
                ..member_tls()
            },
            "do not go together",
        ),
        (
            TlsFiles {
                key: Secret::new("garbage"),
                ..member_tls()
            },
            "tls.key",
        ),
    ];
    for (tls, expected) in cases {
        let error = start(tls).expect("refused");
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    }
    // wss:// and tls go together.
    let mut config = Config::new("n1");
    config.peers.insert("n2".into(), "wss://127.0.0.1:1".into());
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("needs tls"));
    config.tls = Some(member_tls());
    config.peers.insert("n3".into(), "ws://127.0.0.1:2".into());
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("wss://"));
}
