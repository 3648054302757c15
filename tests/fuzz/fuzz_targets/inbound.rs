//! Hostile raft messages stepped into a three-node in-memory cluster with a leader: each
//! record of the input becomes one message from one member to another (built field by
//! field near the cluster's real terms and indexes, or decoded as protobuf), followed by
//! ticks and the cluster's own traffic. Screening refuses or passes each; nothing may panic.
#![no_main]

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, Message, Snapshot};
use raftline::core::Core;
use raftline::ids::raft_id;
use raftline::state_machine::KvStore;
use raftline::storage::{bootstrap_log, mem_storage, MemLog};
use raftline::Config;

const NAMES: [&str; 3] = ["n1", "n2", "n3"];

struct Sim {
    cores: Vec<Core<MemLog>>,
    queue: VecDeque<Message>,
}

impl Sim {
    fn new() -> Sim {
        let members: Vec<(String, String)> = NAMES
            .iter()
            .map(|n| (n.to_string(), String::new()))
            .collect();
        let cores = NAMES
            .iter()
            .map(|name| {
                let mut config = Config::new(*name);
                config.peers = members.iter().cloned().collect();
                let kv = Arc::new(RwLock::new(KvStore::default()));
                Core::new(&config, mem_storage(Some(bootstrap_log(&members))), kv).unwrap()
            })
            .collect();
        let mut sim = Sim {
            cores,
            queue: VecDeque::new(),
        };
        sim.settle();
        sim.cores[0].campaign().unwrap();
        sim.settle();
        sim
    }

    fn index_of(id: u64) -> Option<usize> {
        NAMES.iter().position(|n| raft_id(n) == id)
    }

    /// Handles Readys and delivers the cluster's own messages until quiet (or a bound).
    fn settle(&mut self) {
        for _ in 0..200 {
            let mut busy = false;
            for core in &mut self.cores {
                if core.has_ready() {
                    busy = true;
                    let queue = &mut self.queue;
                    core.handle_ready(&mut |msgs| queue.extend(msgs)).unwrap();
                }
            }
            while let Some(m) = self.queue.pop_front() {
                busy = true;
                if let Some(to) = Sim::index_of(m.to) {
                    let _ = self.cores[to].step(m);
                }
            }
            if !busy {
                return;
            }
        }
    }
}

/// Reads the input a byte (or eight) at a time; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.u8()))
    }

    /// A number near `base`: close to it usually, anywhere sometimes.
    fn near(&mut self, base: u64) -> u64 {
        match self.u8() % 8 {
            0 => self.u64(),
            1 => base.saturating_add(u64::from(self.u8()) << 20),
            2 => base.saturating_sub(u64::from(self.u8())),
            _ => base.saturating_add(u64::from(self.u8() % 8)),
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One message from the input, from member `from` to member `to`.
fn hostile_message(input: &mut Bytes, sim: &Sim, from: usize, to: usize) -> Message {
    let status = sim.cores[to].status();
    let (term, last) = (status.term, status.commit_index);
    let mut m = if input.u8() % 4 == 0 {
        let len = input.u8() as usize;
        Message::decode(input.take(len)).unwrap_or_default()
    } else {
        let mut m = Message {
            msg_type: i32::from(input.u8() % 20),
            term: input.near(term),
            log_term: input.near(term),
            index: input.near(last),
            commit: input.near(last),
            commit_term: input.near(term),
            reject: input.u8() % 2 == 0,
            reject_hint: input.near(last),
            ..Default::default()
        };
        for i in 0..input.u8() % 4 {
            m.entries.push(Entry {
                entry_type: i32::from(input.u8() % 3),
                index: m.index.wrapping_add(1 + u64::from(i)),
                term: input.near(term),
                data: input.take(input.0.len().min(3)).to_vec(),
                context: input.take(2).to_vec(),
                ..Default::default()
            });
        }
        if input.u8() % 8 == 0 {
            let mut snapshot = Snapshot::default();
            snapshot.mut_metadata().index = input.near(last);
            snapshot.mut_metadata().term = input.near(term);
            let voters: Vec<u64> = (0..input.u8() % 4)
                .map(|_| raft_id(NAMES[input.u8() as usize % 3]))
                .collect();
            snapshot.mut_metadata().conf_state = Some(ConfState::from((voters, vec![])));
            snapshot.data = input.take(8).to_vec().into();
            m.snapshot = Some(snapshot);
        }
        if input.u8() % 8 == 0 {
            m.context = raft::CAMPAIGN_TRANSFER.to_vec().into();
        }
        m
    };
    m.from = raft_id(NAMES[from]);
    m.to = raft_id(NAMES[to]);
    m
}

fuzz_target!(|data: &[u8]| {
    let mut sim = Sim::new();
    let mut input = Bytes(data);
    while !input.is_empty() {
        let to = input.u8() as usize % 3;
        let from = (to + 1 + input.u8() as usize % 2) % 3;
        let m = hostile_message(&mut input, &sim, from, to);
        if std::env::var("FUZZ_DEBUG").is_ok() {
            eprintln!("{m:?} -> {:?}", sim.cores[to].status());
        }
        let _ = sim.cores[to].step(m);
        for _ in 0..input.u8() % 4 {
            for core in &mut sim.cores {
                core.tick();
            }
        }
        sim.settle();
    }
});
