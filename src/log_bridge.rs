//! Routes the raft crate's `slog` records into `tracing`, so that one subscriber (and the
//! node's log level) governs every log line of the engine.

use slog::{o, Drain, Level, OwnedKVList, Record};

/// A `slog` drain that re-emits each record as a `tracing` event with target `raft`, naming
/// the member (the raft crate's own context only has its numeric id).
struct TracingDrain {
    node: String,
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg();
        let node = self.node.as_str();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", node, "{msg}"),
            Level::Warning => tracing::warn!(target: "raft", node, "{msg}"),
            Level::Info => tracing::debug!(target: "raft", node, "{msg}"),
            Level::Debug | Level::Trace => tracing::trace!(target: "raft", node, "{msg}"),
        }
        Ok(())
    }
}

/// The logger handed to the raft crate for the node `name`.
pub fn raft_logger(name: &str) -> slog::Logger {
    slog::Logger::root(
        TracingDrain {
            node: name.to_string(),
        },
        o!(),
    )
}
