//! The log store's reads against the raft crate's contract.

use raft::eraftpb::Entry;
use raft::storage::MemStorage;
use raft::{GetEntriesContext, Storage as _};

fn log_of(sizes: &[usize]) -> MemStorage {
    let mem = MemStorage::new();
    let entries: Vec<Entry> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| Entry {
            index: i as u64 + 1,
            term: 1,
            data: vec![1; size],
            ..Default::default()
        })
        .collect();
    mem.wl().append(&entries).unwrap();
    mem
}

/// Whatever the sizes, the same entries as the raft crate's own `MemStorage` would return.
#[test]
fn entries_within_a_size_match_the_raft_crates_answer() {
    // (case, entry sizes, low, high, max_size)
    type Case = (&'static str, Vec<usize>, u64, u64, Option<u64>);
    let cases: &[Case] = &[
        ("no limit", vec![10; 50], 1, 51, None),
        ("small entries, 1 KiB", vec![10; 500], 1, 501, Some(1024)),
        ("large entries", vec![1 << 20; 20], 3, 21, Some(1 << 20)),
        (
            "first entry over the limit",
            vec![5000, 10, 10],
            1,
            4,
            Some(100),
        ),
        ("limit zero", vec![10; 5], 2, 6, Some(0)),
        ("a middle range", vec![100; 300], 17, 250, Some(4000)),
        ("exact fit", vec![10; 40], 1, 41, Some(u64::MAX - 1)),
    ];
    for (case, sizes, low, high, max) in cases {
        let mem = log_of(sizes);
        let ours = super::entries_within(&mem, *low, *high, *max, GetEntriesContext::empty(false))
            .unwrap();
        let theirs = mem
            .entries(*low, *high, *max, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(ours, theirs, "{case}");
    }
}
