//! Engine logs to stderr through `tracing`. The subscriber is process-wide: the most verbose
//! `logLevel` of any node in the process applies (`RUST_LOG`, when set, overrides it).

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Registry};

type Handle = reload::Handle<LevelFilter, Registry>;

static LEVEL: OnceLock<Mutex<(LevelFilter, Option<Handle>)>> = OnceLock::new();

fn parse(level: &str) -> LevelFilter {
    match level {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::WARN,
    }
}

/// Installs the subscriber on first use, or raises its level.
pub fn init(level: &str) {
    let wanted = parse(level);
    let state = LEVEL.get_or_init(|| {
        // Colours only for a person at a terminal: log collectors get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        if let Ok(env) = EnvFilter::try_from_default_env() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(env)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .try_init();
            return Mutex::new((LevelFilter::TRACE, None));
        }
        let (filter, handle) = reload::Layer::new(wanted);
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init();
        Mutex::new((wanted, Some(handle)))
    });
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if wanted > state.0 {
        state.0 = wanted;
        if let Some(handle) = &state.1 {
            let _ = handle.reload(wanted);
        }
    }
}
