//! Per-node logging. The engine writes ordinary `tracing` events; [`Router`], the process's
//! subscriber, sends each one to the node it came from, filtered at that node's level and
//! written to that node's sink. A node's tasks carry its [`NodeLog`] in a task-local (see
//! [`within`] and [`inherit`]), so no call site has to name its node and two nodes in one
//! process can log at different levels to different places.
//!
//! `tracing`'s callsite filter is process-wide, so [`Router`] reports the most verbose level
//! of any live node as its hint (events below it cost one branch) and decides per event.

pub(crate) mod raft_bridge;

use crate::sync::Recover;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// The level of events that come from no node (there are none in normal operation).
const OUTSIDE_NODES: LevelFilter = LevelFilter::WARN;

/// One log record, as a sink receives it.
#[derive(Debug)]
pub struct LogLine<'a> {
    pub level: Level,
    /// The member's name; empty outside any node.
    pub node: &'a str,
    /// The module that logged (`raftline::transport::peer`), or `raft` for the raft crate.
    pub target: &'a str,
    pub message: &'a str,
    /// The event's other fields, formatted (`peer = "n2"`).
    pub fields: &'a [(&'static str, String)],
}

/// Where a node's log lines go. The default ([`LogSink::stderr`]) writes plain lines.
#[derive(Clone)]
pub struct LogSink(Arc<dyn Fn(&LogLine<'_>) + Send + Sync>);

impl LogSink {
    pub fn new(write: impl Fn(&LogLine<'_>) + Send + Sync + 'static) -> LogSink {
        LogSink(Arc::new(write))
    }

    /// Plain text lines on stderr (what log collectors expect: no colour codes).
    pub fn stderr() -> LogSink {
        LogSink::new(write_stderr)
    }

    fn write(&self, line: &LogLine<'_>) {
        (self.0)(line)
    }
}

/// Writes one plain line to stderr.
fn write_stderr(line: &LogLine<'_>) {
    use std::io::Write;
    let text = format_line(line, SystemTime::now());
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

/// A node's logging: its name, level and sink. While one exists its level counts towards
/// the process's callsite filter.
#[derive(Debug)]
pub struct NodeLog {
    name: String,
    level: LevelFilter,
    sink: LogSink,
}

impl NodeLog {
    pub fn new(name: &str, level: LevelFilter, sink: Option<LogSink>) -> Arc<NodeLog> {
        levels_changed(|counts| counts[level_slot(level)] += 1);
        Arc::new(NodeLog {
            name: name.to_string(),
            level,
            sink: sink.unwrap_or_else(LogSink::stderr),
        })
    }
}

impl Drop for NodeLog {
    fn drop(&mut self) {
        levels_changed(|counts| counts[level_slot(self.level)] -= 1);
    }
}

tokio::task_local! {
    static CURRENT: Option<Arc<NodeLog>>;
}

/// The log of the node whose task is running, if any.
pub fn current() -> Option<Arc<NodeLog>> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// Runs `future` as part of the node that `log` belongs to.
pub fn within<F: Future>(log: Option<Arc<NodeLog>>, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(log, future)
}

/// Runs blocking work as part of the node that `log` belongs to.
pub fn within_sync<R>(log: Option<Arc<NodeLog>>, work: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(log, work)
}

/// `future` logs as the current task's node does: wrap every task a node spawns in it.
pub fn inherit<F: Future>(future: F) -> impl Future<Output = F::Output> {
    within(current(), future)
}

/// How many live nodes log at each level (OFF, ERROR, WARN, INFO, DEBUG, TRACE).
static LEVEL_COUNTS: Mutex<[usize; 6]> = Mutex::new([0; 6]);

fn level_slot(level: LevelFilter) -> usize {
    match level.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

const SLOT_LEVELS: [LevelFilter; 6] = [
    LevelFilter::OFF,
    LevelFilter::ERROR,
    LevelFilter::WARN,
    LevelFilter::INFO,
    LevelFilter::DEBUG,
    LevelFilter::TRACE,
];

/// The most verbose level any live node (or an event outside nodes) wants.
fn most_verbose() -> LevelFilter {
    let counts = LEVEL_COUNTS.lock().recover();
    let live = (0..6)
        .rev()
        .find(|&slot| counts[slot] > 0)
        .map_or(LevelFilter::OFF, |slot| SLOT_LEVELS[slot]);
    live.max(OUTSIDE_NODES)
}

/// Updates the counts and, when the most verbose level changed, tells `tracing` to ask
/// [`Router`] again (it caches the answer in every callsite).
fn levels_changed(update: impl FnOnce(&mut [usize; 6])) {
    let before = most_verbose();
    update(&mut LEVEL_COUNTS.lock().recover());
    if most_verbose() != before {
        tracing::callsite::rebuild_interest_cache();
    }
}

/// The subscriber that routes each event to its node's sink. Install it once per process
/// with [`install`]; it keeps no state of its own, so every worker thread can share it.
pub struct Router {
    next_span: AtomicU64,
}

/// Makes [`Router`] the process's subscriber (a no-op if one is installed already).
pub fn install() {
    let _ = tracing::subscriber::set_global_default(Router {
        next_span: AtomicU64::new(1),
    });
}

impl Subscriber for Router {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The answer depends on which node's task logs: ask for every event.
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(most_verbose())
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let level = current().map_or(OUTSIDE_NODES, |log| log.level);
        level >= *metadata.level()
    }

    fn event(&self, event: &Event<'_>) {
        let log = current();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = LogLine {
            level: *event.metadata().level(),
            node: log.as_ref().map_or("", |log| log.name.as_str()),
            target: event.metadata().target(),
            message: &fields.message,
            fields: &fields.others,
        };
        match &log {
            Some(log) => log.sink.write(&line),
            None => write_stderr(&line),
        }
    }

    // The engine logs events only; spans are accepted and ignored.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// An event's message and other fields, formatted.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, text: String) {
        if field.name() == "message" {
            self.message = text;
        } else {
            self.others.push((field.name(), text));
        }
    }
}

/// `2026-11-23T10:04:05.123Z  WARN raftline::transport::peer node="n1" peer=n2: message`
pub fn format_line(line: &LogLine<'_>, at: SystemTime) -> String {
    let mut text = String::with_capacity(96 + line.message.len());
    write_timestamp(&mut text, at);
    let _ = write!(text, " {:>5} {}", line.level, line.target);
    if !line.node.is_empty() {
        let _ = write!(text, " node={:?}", line.node);
    }
    for (name, value) in line.fields {
        let _ = write!(text, " {name}={value}");
    }
    let _ = writeln!(text, ": {}", line.message);
    text
}

/// RFC 3339 in UTC with milliseconds (no date crate needed for one format).
fn write_timestamp(out: &mut String, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        since.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_plain_and_name_the_member() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_435_445_123);
        let fields = [("peer", "n2".to_string())];
        let line = LogLine {
            level: Level::WARN,
            node: "n1",
            target: "raftline::transport::peer",
            message: "peer refused us",
            fields: &fields,
        };
        assert_eq!(
            format_line(&line, at),
            "2026-11-23T12:04:05.123Z  WARN raftline::transport::peer node=\"n1\" peer=n2: peer refused us\n"
        );
    }

    #[test]
    fn timestamps_cross_leap_days_and_years() {
        let mut text = String::new();
        write_timestamp(&mut text, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(text, "2000-02-29T00:00:00.000Z");
        text.clear();
        write_timestamp(&mut text, UNIX_EPOCH + Duration::from_secs(1_735_689_599)); // 2024-12-31
        assert_eq!(text, "2024-12-31T23:59:59.000Z");
    }
}
