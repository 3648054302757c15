//! Node configuration and its validation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::validate_name;

/// Everything a node needs to start. Build one with [`Config::new`], adjust the public
/// fields, and [`crate::start`] validates it.
#[derive(Debug, Clone)]
pub struct Config {
    /// This member's stable name (1-64 characters of `[A-Za-z0-9._-]`).
    pub name: String,
    /// Initial voters: name -> `ws://host:port` URL. May include this node. An empty URL means
    /// "not known yet": messages to that peer are dropped until [`crate::NodeHandle::set_peer_url`]
    /// supplies one (test clusters on ephemeral ports need this).
    pub peers: BTreeMap<String, String>,
    /// `host:port` to bind. Default: the port of this node's own URL in `peers` (on all
    /// interfaces unless that URL names a loopback host), else `127.0.0.1:0`.
    pub listen: Option<String>,
    /// Peers of another cluster are refused at the handshake.
    pub cluster_id: String,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Base election timeout; the actual one is random in `[t, 2t)`.
    pub election_timeout: Duration,
    /// Pre-vote (a partitioned node cannot disrupt the cluster when it returns).
    pub pre_vote: bool,
    /// A leader that loses contact with a quorum steps down.
    pub check_quorum: bool,
    /// Largest accepted proposal, in bytes.
    pub max_proposal_bytes: usize,
    /// Most writes this node holds at once, waiting for a leader or for their entry to
    /// apply: past it a write fails at once with `ERR_OVERLOADED` (backpressure instead of a
    /// queue without bound).
    pub max_pending_writes: usize,
    /// Durable storage here; `None` keeps everything in memory (nothing survives).
    pub data_dir: Option<std::path::PathBuf>,
    /// With durable storage: snapshot the state and compact the log after this many
    /// applied entries.
    pub snapshot_every: u64,
    /// With durable storage: start a new log segment past this size (small values are for
    /// tests that exercise rotation and compaction).
    pub wal_segment_bytes: u64,
    /// The application keeps a state machine of its own (raw commands) and supplies its
    /// bytes for each snapshot ([`crate::Event::SnapshotRequest`]); it is handed them back to
    /// restore from ([`crate::Event::Snapshot`] with `restore`).
    pub app_snapshots: bool,
    /// Keep the changes applied for watches from an index from the start, not only from the
    /// first watch on (see `core::history`: it costs write throughput).
    pub record_changes: bool,
    /// Start empty and wait to be added to a running cluster (`peers` then only says where
    /// the members are, not who votes).
    pub join: bool,
    /// Restart this member, from its data, as the only member of a new cluster (recovery
    /// from a lost quorum; see `operations::recovery`). Needs `data_dir`.
    pub force_new_cluster: bool,
    /// Peers must prove this shared secret in the handshake (and this node proves it to
    /// them); `None` accepts any peer that names a member.
    pub secret: Option<Secret>,
    /// TLS for the peer port: peers are `wss://` URLs and must present a certificate the
    /// CA signed. Works together with `secret`.
    pub tls: Option<TlsFiles>,
    /// The peer network is trusted: a node that listens beyond loopback may run without a
    /// `secret` or `tls` (otherwise it refuses to start).
    pub insecure: bool,
    /// Where this node's application serves HTTP, advertised to the members (a follower can
    /// then send clients to the leader).
    pub http_url: Option<String>,
    /// How much this node logs (`tracing` levels; other nodes in the process may differ).
    pub log_level: tracing::level_filters::LevelFilter,
    /// Where this node's log lines go; `None`: plain lines on stderr.
    pub log_sink: Option<crate::logging::LogSink>,
    /// Verification: every lease this node publishes (or withdraws) is logged here, stamped
    /// when it became visible to readers.
    #[doc(hidden)]
    pub lease_log: Option<LeaseLog>,
    /// Where the core reads the time: the system's clock, or (simulated-network tests) a
    /// manual one that their ticks advance.
    #[doc(hidden)]
    pub clock: crate::clock::Clock,
    /// Test-only emulation of power loss in the WAL: writes stay in memory until each
    /// fsync, so a killed process loses exactly what was not yet fsynced.
    #[doc(hidden)]
    pub emulate_power_loss: bool,
    /// Randomize each election timeout in `[t, 2t)` (the default). Off, it is exactly `t`:
    /// a simulation that must replay identically gives its nodes timeouts of their own.
    #[doc(hidden)]
    pub election_jitter: bool,
}

/// PEM material for TLS on the peer port.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// This node's certificate chain.
    pub cert: Vec<u8>,
    /// Its private key (its `Debug` form never shows it).
    pub key: Secret,
    /// The CA that signs every member's certificate; `None`: the members share the
    /// self-signed `cert`, which is then the CA.
    pub ca: Option<Vec<u8>>,
}

/// The cluster's shared secret. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<[u8]>);

impl Secret {
    pub fn new(secret: impl AsRef<[u8]>) -> Secret {
        Secret(secret.as_ref().into())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A shared log of a node's published leases (verification).
pub type LeaseLog = std::sync::Arc<std::sync::Mutex<Vec<LeaseRecord>>>;

/// A lease published (`until: Some`) or withdrawn (`None`) at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    pub at: std::time::Instant,
    pub until: Option<std::time::Instant>,
}

/// Default leader heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(50);
/// Default base election timeout.
pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(150);
/// Default largest proposal.
pub const DEFAULT_MAX_PROPOSAL_BYTES: usize = 1 << 20;
/// By default, most writes a node holds at once (see [`Config::max_pending_writes`]).
pub const DEFAULT_MAX_PENDING_WRITES: usize = 65_536;
/// The highest `max_pending_writes` accepted.
pub const MAX_PENDING_WRITES: usize = 1 << 20;
/// Default number of applied entries between snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// Entries kept after a snapshot, so that slightly lagging followers catch up from the log.
pub const SNAPSHOT_KEEP_ENTRIES: u64 = 1_000;
/// Shortest cluster secret: a shorter one falls to an offline guess from one Challenge.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest cluster secret.
pub const MAX_SECRET_BYTES: usize = 1024;
/// How the errors about secrets say to make one.
const GENERATE_SECRET: &str = "openssl rand -hex 32";
/// Default cluster id.
pub const DEFAULT_CLUSTER_ID: &str = "raftline";
/// Election timeouts are measured in at least this many ticks, so that the random part of
/// the timeout has a useful resolution.
const MIN_ELECTION_TICKS: u32 = 10;

impl Config {
    /// A configuration with the defaults of docs/API.md.
    pub fn new(name: impl Into<String>) -> Self {
        Config {
            name: name.into(),
            peers: BTreeMap::new(),
            listen: None,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            heartbeat: DEFAULT_HEARTBEAT,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
            pre_vote: true,
            check_quorum: true,
            max_proposal_bytes: DEFAULT_MAX_PROPOSAL_BYTES,
            max_pending_writes: DEFAULT_MAX_PENDING_WRITES,
            data_dir: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            wal_segment_bytes: crate::limits::DEFAULT_SEGMENT_BYTES,
            app_snapshots: false,
            record_changes: false,
            join: false,
            force_new_cluster: false,
            secret: None,
            tls: None,
            insecure: false,
            http_url: None,
            log_level: tracing::level_filters::LevelFilter::WARN,
            log_sink: None,
            lease_log: None,
            clock: crate::clock::Clock::system(),
            election_jitter: true,
            emulate_power_loss: false,
        }
    }

    /// Checks every field; the error names the field and what was expected.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name).map_err(|e| invalid("name", e))?;
        for (name, url) in &self.peers {
            validate_name(name).map_err(|e| invalid(&format!("peers[{name:?}]"), e))?;
            if !url.is_empty() {
                parse_ws_url(url).map_err(|e| invalid(&format!("peers[{name:?}]"), e))?;
            }
        }
        if let Some(url) = &self.http_url {
            if !valid_http_url(url) {
                return Err(invalid(
                    "http_url",
                    "must be an http:// or https:// URL of at most 256 printable characters",
                ));
            }
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 256 {
            return Err(invalid("cluster_id", "must be 1-256 bytes"));
        }
        if self.heartbeat < Duration::from_millis(1) {
            return Err(invalid("heartbeat", "must be at least 1 ms"));
        }
        if self.election_timeout <= self.heartbeat {
            return Err(invalid(
                "election_timeout",
                "must be greater than the heartbeat interval",
            ));
        }
        if self.max_proposal_bytes == 0
            || self.max_proposal_bytes > crate::limits::MAX_FRAME_BYTES / 2
        {
            return Err(invalid(
                "max_proposal_bytes",
                format!("must be 1..={}", crate::limits::MAX_FRAME_BYTES / 2),
            ));
        }
        if self.max_pending_writes == 0 || self.max_pending_writes > MAX_PENDING_WRITES {
            return Err(invalid(
                "max_pending_writes",
                format!("must be 1..={MAX_PENDING_WRITES}"),
            ));
        }
        if self.snapshot_every == 0 {
            return Err(invalid("snapshot_every", "must be at least 1"));
        }
        if self.join && !self.peers.keys().any(|p| *p != self.name) {
            return Err(invalid(
                "peers",
                "a node that joins needs the names and URLs of the members it joins",
            ));
        }
        if self.force_new_cluster && self.data_dir.is_none() {
            return Err(invalid(
                "force_new_cluster",
                "needs data_dir: it restarts a member from the data it kept",
            ));
        }
        if self.force_new_cluster && self.join {
            return Err(invalid(
                "force_new_cluster",
                "cannot be combined with join: it starts a new cluster of this member alone",
            ));
        }
        if let Some(listen) = &self.listen {
            split_host_port(listen).map_err(|e| invalid("listen", e))?;
        }
        if let Some(secret) = &self.secret {
            let len = secret.bytes().len();
            if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&len) {
                return Err(invalid(
                    "secret",
                    format!(
                        "must be {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, got {len} (generate one: {GENERATE_SECRET})"
                    ),
                ));
            }
        }
        if self.secret.is_none() && self.tls.is_none() && !self.insecure {
            if let Some(beyond) = self.reachable_beyond_loopback() {
                return Err(invalid(
                    "secret",
                    format!(
                        "{beyond} is beyond loopback, and without a secret anyone who reaches the \
                         peer port can speak for a member: give a secret (generate one: \
                         {GENERATE_SECRET}), tls, or insecure: true if the network is trusted"
                    ),
                ));
            }
        }
        let scheme = if self.tls.is_some() {
            "wss://"
        } else {
            "ws://"
        };
        if let Some((peer, _)) = self
            .peers
            .iter()
            .find(|(_, url)| !url.is_empty() && !url.starts_with(scheme))
        {
            let why = if self.tls.is_some() {
                "with tls, peer URLs are wss://"
            } else {
                "a wss:// URL needs tls"
            };
            return Err(invalid("peers", format!("{peer}: {why}")));
        }
        Ok(())
    }

    /// What makes this node reachable from other machines, if anything: the address it
    /// binds or the peer URL it gives itself.
    fn reachable_beyond_loopback(&self) -> Option<String> {
        let listen = self.listen_addr();
        if let Ok((host, _)) = split_host_port(&listen) {
            if !is_loopback(&host) {
                return Some(format!("the listen address {listen}"));
            }
        }
        let own = self.peers.get(&self.name).filter(|url| !url.is_empty())?;
        match parse_ws_url(own) {
            Ok((host, _)) if is_loopback(&host) => None,
            _ => Some(format!("this node's peer URL {own}")),
        }
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> String {
        if let Some(listen) = &self.listen {
            return listen.clone();
        }
        match self.peers.get(&self.name).map(|u| parse_ws_url(u)) {
            Some(Ok((host, port))) if is_loopback(&host) => format!("{host}:{port}"),
            Some(Ok((_, port))) => format!("0.0.0.0:{port}"),
            _ => "127.0.0.1:0".to_string(),
        }
    }

    /// How often the driver ticks the core.
    pub fn tick_interval(&self) -> Duration {
        self.ticks().0
    }

    /// The tick length and the heartbeat and election timeouts in ticks.
    pub(crate) fn ticks(&self) -> (Duration, usize, usize) {
        let tick = self
            .heartbeat
            .min(self.election_timeout / MIN_ELECTION_TICKS)
            .max(Duration::from_millis(1));
        let in_ticks = |d: Duration| (d.as_secs_f64() / tick.as_secs_f64()).round() as usize;
        let heartbeat = in_ticks(self.heartbeat).max(1);
        let election = in_ticks(self.election_timeout).max(heartbeat + 1);
        (tick, heartbeat, election)
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("invalid {field}: {why}"))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "[::1]" || host == "::1"
}

/// Longest HTTP URL a member may advertise.
pub const MAX_HTTP_URL_BYTES: usize = 256;

/// An `http://` or `https://` URL of printable ASCII without spaces, at most
/// [`MAX_HTTP_URL_BYTES`]: safe to hand to clients in a `Location` header.
pub fn valid_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    url.len() <= MAX_HTTP_URL_BYTES
        && rest.is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic()))
}

/// Splits `ws://host:port[/path]` into host and port.
pub fn parse_ws_url(url: &str) -> std::result::Result<(String, u16), String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| format!("expected a ws:// or wss:// URL, got {url:?}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    split_host_port(authority).map_err(|e| format!("{e} in URL {url:?}"))
}

/// Splits `host:port`, where the port is required.
pub fn split_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got {s:?}"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("expected a port number 0-65535, got {port:?}"))?;
    if host.is_empty() {
        return Err(format!("expected a host before the port, got {s:?}"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_fields_are_named() {
        type Case = (&'static str, fn(&mut Config), &'static str);
        let cases: &[Case] = &[
            ("bad name", |c| c.name = "a b".into(), "invalid name"),
            (
                "bad peer url",
                |c| {
                    c.peers.insert("n2".into(), "http://x:1".into());
                },
                "invalid peers[\"n2\"]",
            ),
            (
                "election not above heartbeat",
                |c| c.election_timeout = c.heartbeat,
                "invalid election_timeout",
            ),
            (
                "zero heartbeat",
                |c| c.heartbeat = Duration::ZERO,
                "invalid heartbeat",
            ),
            (
                "listen without port",
                |c| c.listen = Some("localhost".into()),
                "invalid listen",
            ),
            (
                "empty cluster id",
                |c| c.cluster_id.clear(),
                "invalid cluster_id",
            ),
            ("join without peers", |c| c.join = true, "invalid peers"),
            (
                "join with only itself as peer",
                |c| {
                    c.join = true;
                    c.peers.insert("n1".into(), "ws://127.0.0.1:1".into());
                },
                "invalid peers",
            ),
        ];
        for (case, mutate, expected) in cases {
            let mut config = Config::new("n1");
            mutate(&mut config);
            let err = config.validate().expect_err(case);
            assert!(err.to_string().contains(expected), "{case}: {err}");
            assert_eq!(err.code(), "ERR_INVALID", "{case}");
        }
        Config::new("n1").validate().expect("defaults are valid");
    }

    /// Before: a node listened on every interface without a secret with only a warning, and
    /// `secret: "x"` was accepted (a weak secret falls to an offline guess from one
    /// Challenge).
    #[test]
    fn beyond_loopback_a_node_needs_a_secret_tls_or_insecure() {
        let strong = || Secret::new("0123456789abcdef");
        type Case = (&'static str, fn(&mut Config), Option<&'static str>);
        let cases: &[Case] = &[
            ("loopback by default", |_| {}, None),
            (
                "every interface",
                |c| c.listen = Some("0.0.0.0:7001".into()),
                Some("the listen address 0.0.0.0:7001 is beyond loopback"),
            ),
            (
                "a routable own URL",
                |c| {
                    c.peers.insert("n1".into(), "ws://db-0.svc:7001".into());
                    c.listen = Some("127.0.0.1:7001".into());
                },
                Some("this node's peer URL ws://db-0.svc:7001 is beyond loopback"),
            ),
            (
                "localhost and ::1",
                |c| {
                    c.peers.insert("n1".into(), "ws://localhost:7001".into());
                    c.listen = Some("[::1]:7001".into());
                },
                None,
            ),
            (
                "with a secret",
                |c| {
                    c.listen = Some("0.0.0.0:7001".into());
                    c.secret = Some(Secret::new("0123456789abcdef"));
                },
                None,
            ),
            (
                "insecure by choice",
                |c| {
                    c.listen = Some("0.0.0.0:7001".into());
                    c.insecure = true;
                },
                None,
            ),
            (
                "a secret of 15 bytes",
                |c| c.secret = Some(Secret::new("0123456789abcde")),
                Some("must be 16-1024 bytes, got 15 (generate one: openssl rand -hex 32)"),
            ),
        ];
        for (case, mutate, refused) in cases {
            let mut config = Config::new("n1");
            mutate(&mut config);
            match (config.validate(), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(why)) => {
                    let text = e.to_string();
                    assert!(text.contains(why), "{case}: {text}");
                    assert_eq!(e.code(), "ERR_INVALID");
                    if why.contains("beyond") {
                        for named in ["secret", "tls", "insecure: true", "openssl rand"] {
                            assert!(text.contains(named), "{case}: names {named}: {text}");
                        }
                    }
                }
                (outcome, _) => panic!("{case}: {outcome:?}"),
            }
        }
        let mut config = Config::new("n1");
        config.secret = Some(strong());
        config.validate().expect("16 bytes will do");
    }

    #[test]
    fn listen_defaults_follow_own_url() {
        let mut c = Config::new("n1");
        assert_eq!(c.listen_addr(), "127.0.0.1:0");
        c.peers.insert("n1".into(), "ws://127.0.0.1:7001".into());
        assert_eq!(c.listen_addr(), "127.0.0.1:7001");
        c.peers
            .insert("n1".into(), "ws://db-0.svc:7001/raft".into());
        assert_eq!(c.listen_addr(), "0.0.0.0:7001");
    }

    #[test]
    fn timing_in_ticks() {
        let mut c = Config::new("n1");
        let (tick, hb, el) = c.ticks();
        assert_eq!((tick, hb, el), (Duration::from_millis(15), 3, 10));
        c.heartbeat = Duration::from_millis(10);
        c.election_timeout = Duration::from_millis(50);
        let (tick, hb, el) = c.ticks();
        assert_eq!((tick, hb, el), (Duration::from_millis(5), 2, 10));
    }
}
