//! Tests of the key-value state machine: commands, their results, snapshots.
use super::*;

fn b(s: &str) -> ByteBuf {
    ByteBuf::from(s.as_bytes().to_vec())
}

#[test]
fn commands_round_trip() {
    let cmds = [
        Command::Set {
            key: "k".into(),
            value: b("v"),
        },
        Command::Delete { key: "k".into() },
        Command::Cas {
            key: "k".into(),
            expected: None,
            next: Some(b("1")),
        },
        Command::Batch {
            ops: vec![
                BatchOp::Set {
                    key: "a".into(),
                    value: b("1"),
                },
                BatchOp::Delete { key: "b".into() },
            ],
        },
        Command::Raw(b("raw")),
        Command::Incr {
            key: "n".into(),
            by: -2.5,
        },
        Command::SessionOpen { ttl_ms: 10_000 },
        Command::SessionRenew { ids: vec![3, 9] },
        Command::SessionClose { id: 3 },
        Command::SessionExpire {
            id: 9,
            renewed_at: 12,
        },
        Command::LockAcquire {
            name: "job".into(),
            session: 3,
            wait: true,
        },
        Command::LockRelease {
            name: "job".into(),
            session: 3,
        },
        Command::LockGrant { name: "job".into() },
        Command::SetEphemeral {
            key: "w".into(),
            value: b("1"),
            session: 3,
        },
        Command::CasEphemeral {
            key: "w".into(),
            expected: None,
            next: Some(b("2")),
            session: 3,
        },
    ];
    for cmd in cmds {
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
    }
    assert!(Command::decode(b"\xc1garbage").is_err());
}

#[test]
fn coordination_commands_refuse_bad_input() {
    let renewal = |n: u64| Command::SessionRenew {
        ids: (1..=n).collect(),
    };
    assert!(renewal(sessions::MAX_RENEWALS_PER_ENTRY as u64)
        .validate()
        .is_ok());
    let err = renewal(sessions::MAX_RENEWALS_PER_ENTRY as u64 + 1).validate();
    assert!(err.unwrap_err().contains("at most"));
    for name in [String::new(), "x".repeat(MAX_KEY_BYTES + 1)] {
        let acquire = Command::LockAcquire {
            name,
            session: 1,
            wait: true,
        };
        assert!(acquire.validate().unwrap_err().starts_with("name must be"));
    }
}

#[test]
fn apply_table() {
    let mut kv = KvStore::default();
    // (case, command, expected ok, expected value, keys changed)
    let cases: Vec<(&str, Command, bool, Option<&str>, usize)> = vec![
        (
            "set new",
            Command::Set {
                key: "a".into(),
                value: b("1"),
            },
            true,
            None,
            1,
        ),
        (
            "set again returns prev",
            Command::Set {
                key: "a".into(),
                value: b("2"),
            },
            true,
            Some("1"),
            1,
        ),
        (
            "cas match",
            Command::Cas {
                key: "a".into(),
                expected: Some(b("2")),
                next: Some(b("3")),
            },
            true,
            Some("3"),
            1,
        ),
        (
            "cas mismatch",
            Command::Cas {
                key: "a".into(),
                expected: Some(b("2")),
                next: Some(b("4")),
            },
            false,
            Some("3"),
            0,
        ),
        (
            "cas absent fails on present",
            Command::Cas {
                key: "a".into(),
                expected: None,
                next: Some(b("9")),
            },
            false,
            Some("3"),
            0,
        ),
        (
            "cas absent on absent",
            Command::Cas {
                key: "z".into(),
                expected: None,
                next: Some(b("1")),
            },
            true,
            Some("1"),
            1,
        ),
        (
            "delete existing",
            Command::Delete { key: "z".into() },
            true,
            Some("1"),
            1,
        ),
        (
            "delete missing",
            Command::Delete { key: "z".into() },
            false,
            None,
            0,
        ),
        (
            "batch",
            Command::Batch {
                ops: vec![
                    BatchOp::Set {
                        key: "b".into(),
                        value: b("x"),
                    },
                    BatchOp::Delete { key: "a".into() },
                ],
            },
            true,
            None,
            2,
        ),
    ];
    for (case, cmd, ok, value, changed) in cases {
        let r = kv.apply(1, cmd, true);
        assert_eq!(r.ok, ok, "{case}: ok");
        assert_eq!(
            r.value.as_deref(),
            value.map(str::as_bytes),
            "{case}: value"
        );
        assert_eq!(r.changes.len(), changed, "{case}: changes");
    }
    assert_eq!(kv.range(""), vec![("b".to_string(), b"x".to_vec())]);
}

#[test]
fn incr_adds_to_numbers_only() {
    let mut kv = KvStore::default();
    let incr = |by: f64| Command::Incr {
        key: "n".into(),
        by,
    };
    let r = kv.apply(1, incr(5.0), true);
    assert!(r.ok);
    assert_eq!(
        r.value.as_deref(),
        Some(&[0x05u8][..]),
        "absent counts as 0"
    );
    assert_eq!(r.changes.len(), 1);
    let r = kv.apply(1, incr(-7.5), true);
    assert_eq!(
        crate::state_machine::number::read(&r.value.unwrap()),
        Some(-2.5)
    );
    kv.apply(
        1,
        Command::Set {
            key: "n".into(),
            value: ByteBuf::from(vec![0xa1, b'x']),
        },
        false,
    );
    let r = kv.apply(1, incr(1.0), true);
    assert!(!r.ok, "a string is not a number");
    assert!(r.changes.is_empty());
    assert_eq!(kv.get("n").unwrap(), &[0xa1, b'x']);
    assert!(incr(f64::NAN).validate().is_err());
    assert!(incr(f64::INFINITY).validate().is_err());
}

#[test]
fn snapshot_data_round_trips() {
    let mut kv = KvStore::default();
    kv.apply(
        1,
        Command::Set {
            key: "a".into(),
            value: b("1"),
        },
        false,
    );
    for app in [None, Some(b"app state".to_vec())] {
        let data = SnapshotData {
            kv: kv.clone(),
            app,
            members: vec![("n1".to_string(), "ws://h:1".to_string())],
            conf_epoch: 7,
        };
        assert_eq!(SnapshotData::decode(&data.encode()).unwrap(), data);
        // The bytes of snapshots written before revisions: pairs of two, then the rest.
        let pairs: Vec<(String, ByteBuf)> = vec![("a".into(), b("1"))];
        let app = data.app.clone().map(ByteBuf::from);
        let written = rmp_serde::to_vec(&(pairs, app, &data.members, 7u64)).unwrap();
        let old = SnapshotData::decode(&written).unwrap();
        assert_eq!(
            (old.app, old.members),
            (data.app.clone(), data.members.clone())
        );
        let record = old.kv.record("a").unwrap();
        assert_eq!(record.value, &b"1"[..]);
        let revisions = (record.create_index, record.mod_index, record.version);
        assert_eq!(revisions, (0, 0, 1));
    }
    assert_eq!(SnapshotData::decode(b"").unwrap(), SnapshotData::default());
    assert!(SnapshotData::decode(b"\xc1").is_err());
}

#[test]
fn sessions_and_locks_travel_in_snapshots_and_older_snapshots_have_none() {
    let mut kv = KvStore::default();
    kv.apply(3, Command::SessionOpen { ttl_ms: 5000 }, false);
    kv.apply(4, Command::SessionRenew { ids: vec![3, 99] }, false);
    kv.apply(5, Command::SessionOpen { ttl_ms: 5000 }, false);
    let lock = |session| Command::LockAcquire {
        name: "job".into(),
        session,
        wait: true,
    };
    kv.apply(6, lock(3), false);
    kv.apply(7, lock(5), false);
    let data = SnapshotData {
        kv,
        ..SnapshotData::default()
    };
    let back = SnapshotData::decode(&data.encode()).unwrap();
    assert_eq!(back, data);
    let record = back.kv.sessions().get(3).unwrap();
    assert_eq!((record.ttl_ms, record.renewed_at), (5000, 4));
    let job = back.kv.locks().get("job").unwrap();
    assert_eq!(job.holder.map(|h| (h.session, h.fence)), Some((3, 6)));
    assert_eq!(job.waiters, [(5, 7)]);
    // A snapshot written with sessions and before locks existed: five parts.
    let sessions_only = rmp_serde::to_vec(&(
        Vec::<(String, ByteBuf)>::new(),
        None::<ByteBuf>,
        Vec::<(String, String)>::new(),
        0u64,
        vec![(3u64, 5000u64, 4u64)],
    ))
    .unwrap();
    let back = SnapshotData::decode(&sessions_only).unwrap();
    assert_eq!(back.kv.sessions().len(), 1);
    assert!(back.kv.locks().is_empty());
    // A snapshot written before sessions existed: four parts.
    let old = rmp_serde::to_vec(&(
        Vec::<(String, ByteBuf)>::new(),
        None::<ByteBuf>,
        Vec::<(String, String)>::new(),
        0u64,
    ))
    .unwrap();
    assert!(SnapshotData::decode(&old).unwrap().kv.sessions().is_empty());
}

#[test]
fn a_session_end_deletes_its_keys_and_a_plain_write_makes_a_key_ordinary() {
    let mut kv = KvStore::default();
    kv.apply(2, Command::SessionOpen { ttl_ms: 5000 }, true);
    let eph = |key: &str, session| Command::SetEphemeral {
        key: key.into(),
        value: b("v"),
        session,
    };
    // Phase 1: a, b and c in session 2; c written again outside it; d in no session.
    assert!(kv.apply(3, eph("a", 2), true).ok);
    let cas = Command::CasEphemeral {
        key: "b".into(),
        expected: None,
        next: Some(b("w")),
        session: 2,
    };
    assert!(kv.apply(4, cas, true).ok);
    let batch = Command::Batch {
        ops: vec![BatchOp::SetEphemeral {
            key: "c".into(),
            value: b("x"),
            session: 2,
        }],
    };
    kv.apply(5, batch, true);
    kv.apply(
        6,
        Command::Set {
            key: "c".into(),
            value: b("kept"),
        },
        true,
    );
    assert_eq!((kv.owner_of("a"), kv.owner_of("c")), (Some(2), None));
    // Phase 2: writes in a session that does not exist write nothing, all or nothing.
    let refused = kv.apply(7, eph("d", 99), true);
    assert!(refused.no_session && refused.changes.is_empty());
    let mixed = Command::Batch {
        ops: vec![
            BatchOp::Set {
                key: "e".into(),
                value: b("1"),
            },
            BatchOp::SetEphemeral {
                key: "f".into(),
                value: b("1"),
                session: 99,
            },
        ],
    };
    assert!(kv.apply(8, mixed, true).no_session);
    assert_eq!((kv.get("d"), kv.get("e")), (None, None));
    // Phase 3: the snapshot keeps the owners; the session's end deletes a and b only.
    let data = SnapshotData {
        kv,
        ..SnapshotData::default()
    };
    let mut kv = SnapshotData::decode(&data.encode()).unwrap().kv;
    assert_eq!(kv, data.kv);
    let ended = kv.apply(9, Command::SessionClose { id: 2 }, true);
    let deleted: Vec<&str> = ended.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(deleted, ["a", "b"]);
    assert!(ended.changes.iter().all(|c| c.value.is_none()));
    assert_eq!(kv.get("c"), Some(&b"kept"[..]));
    assert_eq!(kv.owner_of("a"), None);
}

#[test]
fn range_is_prefix_bounded_and_sorted() {
    let mut kv = KvStore::default();
    for k in ["u/2", "u/1", "v/1", "u", "t"] {
        kv.apply(
            1,
            Command::Set {
                key: k.into(),
                value: b(k),
            },
            false,
        );
    }
    let keys: Vec<_> = kv.range("u/").into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["u/1", "u/2"]);
}

#[test]
fn keys_are_validated() {
    assert!(Command::Set {
        key: "".into(),
        value: b("")
    }
    .validate()
    .is_err());
    assert!(Command::Delete {
        key: "k".repeat(MAX_KEY_BYTES + 1)
    }
    .validate()
    .is_err());
    assert!(Command::Batch {
        ops: vec![BatchOp::Delete { key: "".into() }]
    }
    .validate()
    .is_err());
    assert!(Command::Raw(b("")).validate().is_ok());
}

fn set(key: &str, value: &str) -> Command {
    Command::Set {
        key: key.into(),
        value: b(value),
    }
}

/// (create_index, mod_index, version) of `key`.
fn revisions(kv: &KvStore, key: &str) -> Option<(u64, u64, u64)> {
    kv.record(key)
        .map(|r| (r.create_index, r.mod_index, r.version))
}

#[test]
fn every_write_gives_its_keys_revisions_and_a_deletion_starts_them_over() {
    let mut kv = KvStore::default();
    // Phase 1: created at 3, written again at 5 (a cas) and 9 (a batch).
    kv.apply(3, set("a", "1"), false);
    assert_eq!(revisions(&kv, "a"), Some((3, 3, 1)));
    let cas = Command::Cas {
        key: "a".into(),
        expected: Some(b("1")),
        next: Some(b("2")),
    };
    kv.apply(5, cas, false);
    let batch = Command::Batch {
        ops: vec![
            BatchOp::Set {
                key: "a".into(),
                value: b("3"),
            },
            BatchOp::Set {
                key: "b".into(),
                value: ByteBuf::from(vec![0xa1, b'x']), // the string "x"
            },
        ],
    };
    kv.apply(9, batch, true);
    assert_eq!(revisions(&kv, "a"), Some((3, 9, 3)));
    assert_eq!(revisions(&kv, "b"), Some((9, 9, 1)));
    // A failed cas and an incr of a string write nothing: no revision moves.
    let failed = Command::Cas {
        key: "a".into(),
        expected: Some(b("nope")),
        next: Some(b("4")),
    };
    kv.apply(10, failed, false);
    let incr = Command::Incr {
        key: "b".into(),
        by: 1.0,
    };
    assert!(!kv.apply(11, incr, false).ok);
    assert_eq!(revisions(&kv, "a"), Some((3, 9, 3)));
    assert_eq!(revisions(&kv, "b"), Some((9, 9, 1)));
    // Phase 2: deleted, then created again: a new life.
    kv.apply(12, Command::Delete { key: "a".into() }, false);
    assert_eq!(revisions(&kv, "a"), None);
    kv.apply(14, set("a", "new"), false);
    assert_eq!(revisions(&kv, "a"), Some((14, 14, 1)));
    // Phase 3: snapshots carry them.
    let data = SnapshotData {
        kv,
        ..SnapshotData::default()
    };
    let back = SnapshotData::decode(&data.encode()).unwrap();
    assert_eq!(revisions(&back.kv, "a"), Some((14, 14, 1)));
    assert_eq!(back, data);
}

#[test]
fn pages_go_in_key_order_after_a_key_and_stop_at_the_prefix() {
    let mut kv = KvStore::default();
    for (i, k) in ["u/3", "u/1", "v/1", "u", "t", "u/2"]
        .into_iter()
        .enumerate()
    {
        kv.apply(i as u64 + 1, set(k, k), false);
    }
    let keys =
        |page: Vec<(String, KeyRecord)>| page.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(kv.page("u/", None, 2)), ["u/1", "u/2"]);
    assert_eq!(keys(kv.page("u/", Some("u/2"), 2)), ["u/3"]);
    assert!(kv.page("u/", Some("u/3"), 2).is_empty());
    // An `after` before the prefix starts at the prefix; one past it ends the page.
    assert_eq!(keys(kv.page("u/", Some("a"), 10)), ["u/1", "u/2", "u/3"]);
    assert!(kv.page("u/", Some("zz"), 10).is_empty());
    assert_eq!(keys(kv.page("", Some("u/3"), 10)), ["v/1"]);
    let (_, record) = &kv.page("u/2", None, 1)[0];
    assert_eq!((record.create_index, record.version), (6, 1));
}

mod transactions {
    use super::*;
    use crate::state_machine::txn::{Compare, Txn, TxnOp, TxnOpResult, MAX_TXN_OPS};

    fn txn(compares: Vec<Compare>, then: Vec<TxnOp>, otherwise: Vec<TxnOp>) -> Command {
        Command::Txn(Txn {
            compares,
            then,
            otherwise,
        })
    }

    fn put(key: &str, value: &str) -> TxnOp {
        TxnOp::Set {
            key: key.into(),
            value: b(value),
        }
    }

    fn get(key: &str) -> TxnOp {
        TxnOp::Get { key: key.into() }
    }

    #[test]
    fn each_comparison_picks_its_branch_and_the_branch_applies_whole() {
        let mut kv = KvStore::default();
        kv.apply(2, set("a", "1"), false);
        kv.apply(4, set("a", "2"), false);
        // (case, comparison, holds)
        let cases = [
            (
                "exists",
                Compare::Exists {
                    key: "a".into(),
                    exists: true,
                },
                true,
            ),
            (
                "absent",
                Compare::Exists {
                    key: "a".into(),
                    exists: false,
                },
                false,
            ),
            (
                "absent key absent",
                Compare::Exists {
                    key: "z".into(),
                    exists: false,
                },
                true,
            ),
            (
                "value",
                Compare::Value {
                    key: "a".into(),
                    value: b("2"),
                },
                true,
            ),
            (
                "other value",
                Compare::Value {
                    key: "a".into(),
                    value: b("1"),
                },
                false,
            ),
            (
                "value of absent",
                Compare::Value {
                    key: "z".into(),
                    value: b(""),
                },
                false,
            ),
            (
                "mod index",
                Compare::ModIndex {
                    key: "a".into(),
                    index: 4,
                },
                true,
            ),
            (
                "old mod index",
                Compare::ModIndex {
                    key: "a".into(),
                    index: 2,
                },
                false,
            ),
            (
                "absent mod index 0",
                Compare::ModIndex {
                    key: "z".into(),
                    index: 0,
                },
                true,
            ),
            (
                "version",
                Compare::Version {
                    key: "a".into(),
                    version: 2,
                },
                true,
            ),
            (
                "absent version 0",
                Compare::Version {
                    key: "z".into(),
                    version: 0,
                },
                true,
            ),
            (
                "absent version 1",
                Compare::Version {
                    key: "z".into(),
                    version: 1,
                },
                false,
            ),
        ];
        for (i, (case, compare, holds)) in cases.into_iter().enumerate() {
            let index = 10 + i as u64;
            let r = kv.apply(
                index,
                txn(
                    vec![compare],
                    vec![put("then", case)],
                    vec![put("else", case)],
                ),
                true,
            );
            let outcome = r.txn.expect(case);
            assert_eq!(outcome.succeeded, holds, "{case}");
            assert_eq!(r.ok, holds, "{case}: ok");
            let written = if holds { "then" } else { "else" };
            assert_eq!(kv.get(written), Some(case.as_bytes()), "{case}");
            assert_eq!(
                revisions(&kv, written).unwrap().1,
                index,
                "{case}: the entry's index"
            );
        }
    }

    #[test]
    fn operations_run_in_order_and_answer_each() {
        let mut kv = KvStore::default();
        kv.apply(1, set("a", "1"), false);
        let ops = vec![
            get("a"),
            put("a", "2"),
            get("a"),
            TxnOp::Delete { key: "a".into() },
            TxnOp::Delete { key: "a".into() },
            get("a"),
            put("b", "new"),
        ];
        let r = kv.apply(7, txn(vec![], ops, vec![]), true);
        let results = r.txn.unwrap().results;
        let read = |r: &TxnOpResult| match r {
            TxnOpResult::Read(record) => record.as_ref().map(|r| (r.value.to_vec(), r.version)),
            TxnOpResult::Written { .. } => panic!("a write's result"),
        };
        assert_eq!(read(&results[0]), Some((b"1".to_vec(), 1)));
        assert_eq!(results[1], TxnOpResult::Written { existed: true });
        assert_eq!(
            read(&results[2]),
            Some((b"2".to_vec(), 2)),
            "a get sees the set before it"
        );
        assert_eq!(results[3], TxnOpResult::Written { existed: true });
        assert_eq!(results[4], TxnOpResult::Written { existed: false });
        assert_eq!(read(&results[5]), None);
        assert_eq!(results[6], TxnOpResult::Written { existed: false });
        // Changes as they happened: a set, a delete, b's set (the second delete changed nothing).
        let changed: Vec<_> = r
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.value.is_some()))
            .collect();
        assert_eq!(changed, [("a", true), ("a", false), ("b", true)]);
    }

    #[test]
    fn a_branch_in_a_dead_session_writes_nothing_and_the_other_branch_may_run() {
        let mut kv = KvStore::default();
        kv.apply(1, set("a", "1"), false);
        let eph = TxnOp::SetEphemeral {
            key: "e".into(),
            value: b("x"),
            session: 99,
        };
        let exists = || {
            vec![Compare::Exists {
                key: "a".into(),
                exists: true,
            }]
        };
        let r = kv.apply(
            2,
            txn(exists(), vec![put("p", "1"), eph.clone()], vec![]),
            true,
        );
        assert!(r.no_session && !r.ok && r.changes.is_empty());
        assert_eq!(kv.get("p"), None, "all or nothing");
        // The dead session is in the branch that does not run: the other one applies.
        let r = kv.apply(3, txn(exists(), vec![put("p", "1")], vec![eph]), true);
        assert!(r.ok && !r.no_session);
        assert_eq!(kv.get("p"), Some(&b"1"[..]));
    }

    #[test]
    fn validation_bounds_the_size_and_checks_every_key() {
        let many = |n: usize| Txn {
            compares: vec![],
            then: (0..n).map(|i| put(&format!("k{i}"), "v")).collect(),
            otherwise: vec![],
        };
        assert!(Command::Txn(many(MAX_TXN_OPS)).validate().is_ok());
        let err = Command::Txn(many(MAX_TXN_OPS + 1)).validate().unwrap_err();
        assert!(err.contains("at most 128"), "{err}");
        let empty_key = txn(
            vec![Compare::Exists {
                key: String::new(),
                exists: true,
            }],
            vec![],
            vec![],
        );
        assert!(empty_key.validate().unwrap_err().starts_with("key must be"));
        let long = txn(vec![], vec![], vec![get(&"x".repeat(MAX_KEY_BYTES + 1))]);
        assert!(long.validate().is_err());
        let cmd = txn(
            vec![Compare::Value {
                key: "a".into(),
                value: b("1"),
            }],
            vec![put("a", "2")],
            vec![get("a")],
        );
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
    }
}

mod idempotent_writes {
    use super::*;

    fn once(key: &str, command: Command) -> Command {
        Command::Idempotent {
            key: key.into(),
            command: Box::new(command),
        }
    }

    fn incr(by: f64) -> Command {
        Command::Incr {
            key: "n".into(),
            by,
        }
    }

    #[test]
    fn a_retry_applies_nothing_and_answers_the_first_result() {
        let mut kv = KvStore::default();
        // Phase 1: the first write applies; its retry (a later entry) does not.
        let first = kv.apply_entry(5, 2, once("req-1", incr(3.0)), true);
        assert!(first.ok && first.duplicate_of.is_none());
        let retry = kv.apply_entry(9, 3, once("req-1", incr(3.0)), true);
        assert_eq!(retry.duplicate_of, Some((5, 2)));
        assert!(retry.changes.is_empty());
        assert_eq!((retry.ok, &retry.value), (first.ok, &first.value));
        assert_eq!(
            crate::state_machine::number::read(kv.get("n").unwrap()),
            Some(3.0)
        );
        // Another key applies; the same key with another command is still the first one's.
        assert!(kv
            .apply_entry(10, 3, once("req-2", incr(1.0)), true)
            .duplicate_of
            .is_none());
        let other = kv.apply_entry(11, 3, once("req-1", set("x", "1")), true);
        assert_eq!(other.duplicate_of, Some((5, 2)));
        assert_eq!(kv.get("x"), None);
        // Phase 2: a transaction's retry gets its outcome back.
        let t = Command::Txn(crate::state_machine::txn::Txn {
            compares: vec![],
            then: vec![crate::state_machine::txn::TxnOp::Get { key: "n".into() }],
            otherwise: vec![],
        });
        let first = kv.apply_entry(12, 3, once("req-3", t.clone()), true);
        let retry = kv.apply_entry(13, 3, once("req-3", t), true);
        assert_eq!(retry.txn, first.txn);
        // Phase 3: snapshots carry the records; a write in a dead session is not recorded.
        let dead = Command::SetEphemeral {
            key: "e".into(),
            value: b("v"),
            session: 99,
        };
        assert!(kv.apply_entry(14, 3, once("req-4", dead), true).no_session);
        assert!(kv.idempotency().get("req-4").is_none());
        let data = SnapshotData {
            kv,
            ..SnapshotData::default()
        };
        let mut back = SnapshotData::decode(&data.encode()).unwrap().kv;
        assert_eq!(back, data.kv);
        let retry = back.apply_entry(20, 4, once("req-1", incr(3.0)), true);
        assert_eq!(retry.duplicate_of, Some((5, 2)));
    }

    #[test]
    fn only_writes_take_a_key_and_keys_are_bounded() {
        assert!(once("k", set("a", "1")).validate().is_ok());
        assert!(once("", set("a", "1"))
            .validate()
            .unwrap_err()
            .contains("idempotency key"));
        assert!(once(&"k".repeat(257), set("a", "1")).validate().is_err());
        let nested = once("k", once("j", set("a", "1")));
        assert!(nested.validate().is_err());
        let session = once("k", Command::SessionOpen { ttl_ms: 5000 });
        assert!(session.validate().is_err());
        assert!(
            once("k", set("", "1")).validate().is_err(),
            "the write itself is checked"
        );
        let cmd = once("k", set("a", "1"));
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
    }
}
