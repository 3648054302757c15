//! Routes the raft crate's `slog` records into `tracing`, so that the node's level and sink
//! (see [`crate::logging`]) govern every log line of the engine.

use slog::{o, Drain, Level, OwnedKVList, Record, KV};

/// A `slog` drain that re-emits each record as a `tracing` event with target `raft`. The
/// raft crate logs from the driver task, so the event belongs to that node.
struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        let wanted = match record.level() {
            Level::Critical | Level::Error => tracing::Level::ERROR,
            Level::Warning => tracing::Level::WARN,
            Level::Info => tracing::Level::DEBUG,
            Level::Debug | Level::Trace => tracing::Level::TRACE,
        };
        if wanted > tracing::level_filters::LevelFilter::current() {
            return Ok(()); // no node in the process wants it: skip formatting the pairs
        }
        // The record's key-value pairs (`term`, `to`, ...) follow the message.
        let mut pairs = Pairs(String::new());
        let _ = record.kv().serialize(record, &mut pairs);
        let msg = format_args!("{}{}", record.msg(), pairs.0);
        match wanted {
            tracing::Level::ERROR => tracing::error!(target: "raft", "{msg}"),
            tracing::Level::WARN => tracing::warn!(target: "raft", "{msg}"),
            tracing::Level::DEBUG => tracing::debug!(target: "raft", "{msg}"),
            _ => tracing::trace!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

/// `slog` key-value pairs as ` key=value` text.
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// The logger handed to the raft crate.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, o!())
}
