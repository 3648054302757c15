//! A node's `logLevel` and `logger` as the engine takes them. Routing is the engine's
//! ([`crate::logging`]); this module only parses the level and turns a JS logger into a sink.

use std::collections::HashMap;

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use tracing::level_filters::LevelFilter;

use crate::logging::{LogLine, LogSink};

/// One log line for a JS `logger`.
#[napi(object)]
pub struct NativeLogLine {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    pub target: String,
    pub message: String,
    pub fields: HashMap<String, String>,
}

/// Lines beyond this many waiting for the JS thread are dropped: a busy event loop must not
/// make the engine wait or grow memory because of its logs.
const LOG_QUEUE: usize = 1024;

/// The JS side of a `logger`: weak, so that it never keeps the process alive.
pub type LogCallback =
    ThreadsafeFunction<NativeLogLine, (), NativeLogLine, Status, false, true, LOG_QUEUE>;

/// `logLevel` as the engine filters (the JS layer has validated it).
pub fn level(name: Option<&str>) -> LevelFilter {
    match name {
        Some("off") => LevelFilter::OFF,
        Some("error") => LevelFilter::ERROR,
        Some("info") => LevelFilter::INFO,
        Some("debug") => LevelFilter::DEBUG,
        Some("trace") => LevelFilter::TRACE,
        _ => LevelFilter::WARN,
    }
}

/// A sink that hands every line to the JS `logger`, without waiting.
pub fn js_sink(callback: LogCallback) -> LogSink {
    LogSink::new(move |line: &LogLine<'_>| {
        let native = NativeLogLine {
            level: line.level.as_str().to_ascii_lowercase(),
            target: line.target.to_string(),
            message: line.message.to_string(),
            fields: line
                .fields
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect(),
        };
        callback.call(native, ThreadsafeFunctionCallMode::NonBlocking);
    })
}
