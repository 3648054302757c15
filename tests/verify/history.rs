//! What the clients of a verification run did and saw: the operations with their call and
//! return times on one logical clock, the log position of every acknowledged write, and the
//! lease intervals each node published (stamped by the engine where it publishes them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raftline::config::{LeaseLog, LeaseRecord};
use raftline::Error;

use super::checker::Op;

/// A logical clock: every call and return takes the next tick.
#[derive(Default)]
pub struct Clock(AtomicU64);

impl Clock {
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// An acknowledged write: the value it wrote at `key`, and the log index it was answered
/// with.
#[derive(Debug, Clone)]
pub struct Acked {
    pub key: String,
    pub value: u64,
    pub index: u64,
}

/// Everything recorded during one run.
#[derive(Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub acked: Vec<Acked>,
    /// Operations that failed for sure (never took effect) and were left out.
    pub refused: u64,
}

/// How an operation ended, as the history counts it.
pub enum Outcome {
    /// It took effect (or read) as reported.
    Done,
    /// It may or may not have taken effect.
    Unknown,
    /// It surely did not take effect.
    Refused,
}

/// Classifies an engine error: which failures leave a write's outcome open.
pub fn outcome_of(error: &Error) -> Outcome {
    match error.code() {
        "ERR_TIMEOUT" | "ERR_STOPPED" => Outcome::Unknown,
        _ => Outcome::Refused,
    }
}

pub type Shared = Arc<Mutex<History>>;

/// Every node's lease log, by name (kept across restarts: a node's config holds its log).
#[derive(Clone, Default)]
pub struct LeaseLogs(Arc<Mutex<HashMap<String, LeaseLog>>>);

impl LeaseLogs {
    /// The log of `name`, created on first use.
    pub fn of(&self, name: &str) -> LeaseLog {
        self.0
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Each node's lease intervals: from when a lease was published to when it ran out or
    /// the next publication replaced or withdrew it.
    pub fn intervals(&self) -> Vec<(String, Instant, Instant)> {
        let logs = self.0.lock().unwrap();
        let mut intervals = Vec::new();
        for (name, log) in logs.iter() {
            let mut records: Vec<LeaseRecord> = log.lock().unwrap().clone();
            records.sort_by_key(|r| r.at);
            for (i, record) in records.iter().enumerate() {
                let Some(until) = record.until else { continue };
                let end = records.get(i + 1).map_or(until, |next| next.at.min(until));
                if end > record.at {
                    intervals.push((name.clone(), record.at, end));
                }
            }
        }
        intervals
    }
}

/// Lease intervals of different nodes that overlap in time (must be none).
pub fn lease_overlaps(intervals: &[(String, Instant, Instant)]) -> Vec<String> {
    let mut sorted = intervals.to_vec();
    sorted.sort_by_key(|(_, from, _)| *from);
    let mut overlaps = Vec::new();
    for (i, (a, a_from, a_end)) in sorted.iter().enumerate() {
        for (b, b_from, _) in &sorted[i + 1..] {
            if b_from >= a_end {
                break;
            }
            if a != b {
                overlaps.push(format!(
                    "{b} published a lease {:?} before {a}'s (from {:?} earlier) ran out",
                    *a_end - *b_from,
                    b_from.duration_since(*a_from)
                ));
            }
        }
    }
    overlaps
}
