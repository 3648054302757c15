//! Jepsen-style verification (see `verify/`): clients against 3- and 5-node clusters under a
//! nemesis, every history (reads, writes, compare-and-sets, and transactions on groups of two
//! keys) checked for linearizability, acknowledged writes at their index on
//! every member, identical states, never two lease holders at once, and never two holders
//! of a lock (with fences in the order of the holds).
//!
//! `VERIFY_RUNS` (default 1) runs per cluster size and `VERIFY_SECONDS` (default 4) of faults
//! per run; `npm run verify` runs 20 of each.

mod common;
mod verify;

use std::time::Duration;

use verify::checker::{check, Verdict};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn runs(size: usize) {
    let runs = env_number("VERIFY_RUNS", 1);
    let seconds = env_number("VERIFY_SECONDS", 4);
    let base = env_number("VERIFY_SEED", rand::random::<u32>() as u64);
    let mut totals = (0usize, 0usize);
    for run in 0..runs {
        let seed = base + run;
        let report = verify::run(size, seed, Duration::from_secs(seconds), 6, 3).await;
        eprintln!("run {}/{runs}: {report}", run + 1);
        if let (false, Ok(path)) = (report.problems.is_empty(), std::env::var("VERIFY_DUMP")) {
            let lines: Vec<String> = report.history.iter().map(|op| format!("{op:?}")).collect();
            std::fs::write(&path, lines.join("\n")).expect("history dump");
        }
        assert!(
            report.problems.is_empty(),
            "run {} ({report}) found: {:#?}",
            run + 1,
            report.problems
        );
        assert!(report.ops > 100, "the clients got work done: {report}");
        assert!(
            report.txns > 20,
            "the transaction clients got work done: {report}"
        );
        totals.0 += report.ops;
        totals.1 += report.faults.values().sum::<u32>() as usize;
        // The checker is not vacuous: it flags faults injected into this very history.
        let injected = [
            ("stale read", verify::inject_stale_read(&report.history)),
            ("lost write", verify::inject_lost_write(&report.history)),
            (
                "torn transaction",
                verify::inject_torn_read(&report.history),
            ),
        ];
        let overlap = verify::locks::inject_overlap(&report.holds)
            .unwrap_or_else(|| panic!("no lock hold to overlap in {report}"));
        assert!(
            !verify::locks::check(&overlap).is_empty(),
            "an injected overlap of two lock holds goes unnoticed"
        );
        assert!(
            report.holds.len() > 10,
            "the lock clients held locks: {report}"
        );
        for (what, history) in injected {
            let history = history.unwrap_or_else(|| panic!("no place for a {what} in {report}"));
            let verdicts = check(&history, verify::CHECK_BUDGET);
            assert!(
                verdicts
                    .iter()
                    .any(|v| matches!(v, Verdict::Violation { .. })),
                "an injected {what} goes unnoticed: {verdicts:?}"
            );
        }
    }
    eprintln!(
        "{runs} runs on {size} nodes: {} operations checked, {} faults injected",
        totals.0, totals.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_stay_linearizable_under_faults() {
    runs(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_stay_linearizable_under_faults() {
    runs(5).await;
}
