//! Durable raft storage: the write-ahead log ([`super::wal`]) plus snapshot files, with the
//! live log mirrored in memory for the raft crate's reads.
//!
//! Layout of a data directory:
//! - `wal/NNNN.wal`: records, one per Ready (entries and hard state together: one write,
//!   one fsync), plus a marker when a snapshot from the leader replaced the log;
//! - `snap/IIII-TTTT.snap`: the newest snapshot (written to a temporary file, fsynced,
//!   renamed, directory fsynced). Older snapshots and log segments it covers are removed.
//!
//! Recovery loads the newest snapshot, then replays the log after it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;

use super::wal::{list_segments, replay_segment, storage_error, sync_dir, Segment, Wal};
use super::LogStore;
use crate::error::{Error, Result};

const HAS_HARD_STATE: u8 = 1;
const HAS_ENTRIES: u8 = 4;
/// The log before this record was replaced by a snapshot received from the leader.
const SNAPSHOT_INSTALLED: u8 = 8;
const SNAPSHOT_MAGIC: &[u8; 8] = b"RLSNAP01";
/// A Ready's entries are written in records of about this size (a record holds at least one
/// entry, and entries are at most 32 MiB): far below what recovery accepts.
const RECORD_TARGET_BYTES: usize = 64 << 20;

/// One log record, as written and replayed.
#[derive(Default)]
struct Record {
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    snapshot_installed: bool,
}

fn put_message(out: &mut Vec<u8>, m: &impl prost::Message) {
    out.extend_from_slice(&(m.encoded_len() as u32).to_le_bytes());
    m.encode(out).expect("a Vec grows as needed");
}

impl Record {
    /// The bytes of a record holding `hard_state` (when given), `entries` and the
    /// snapshot-installed marker: encoded from borrowed parts, so that a Ready's entries are
    /// not copied before they are written.
    fn encode(
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot_installed: bool,
    ) -> Vec<u8> {
        let mut flags = 0;
        flags |= if hard_state.is_some() {
            HAS_HARD_STATE
        } else {
            0
        };
        flags |= if entries.is_empty() { 0 } else { HAS_ENTRIES };
        flags |= if snapshot_installed {
            SNAPSHOT_INSTALLED
        } else {
            0
        };
        let size: usize = entries.iter().map(|e| e.encoded_len() + 4).sum();
        let mut out = Vec::with_capacity(16 + size);
        out.push(flags);
        if let Some(hs) = hard_state {
            put_message(&mut out, hs);
        }
        if !entries.is_empty() {
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for e in entries {
                put_message(&mut out, e);
            }
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> std::result::Result<Record, String> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
            if bytes.len() < n {
                return Err("record body cut short".into());
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Ok(head)
        }
        fn u32_at(bytes: &mut &[u8]) -> std::result::Result<usize, String> {
            Ok(u32::from_le_bytes(take(bytes, 4)?.try_into().expect("4 bytes")) as usize)
        }
        fn message<M: prost::Message + Default>(
            bytes: &mut &[u8],
        ) -> std::result::Result<M, String> {
            let len = u32_at(bytes)?;
            M::decode(take(bytes, len)?).map_err(|e| e.to_string())
        }
        let flags = take(&mut bytes, 1)?[0];
        if flags & !(HAS_HARD_STATE | HAS_ENTRIES | SNAPSHOT_INSTALLED) != 0 {
            return Err(format!("unknown record flags {flags:#04x}"));
        }
        let mut record = Record {
            snapshot_installed: flags & SNAPSHOT_INSTALLED != 0,
            ..Record::default()
        };
        if flags & HAS_HARD_STATE != 0 {
            record.hard_state = Some(message(&mut bytes)?);
        }
        if flags & HAS_ENTRIES != 0 {
            let count = u32_at(&mut bytes)?;
            record.entries = (0..count)
                .map(|_| message(&mut bytes))
                .collect::<std::result::Result<_, _>>()?;
        }
        Ok(record)
    }
}

/// What recovery found.
struct Recovered {
    hard_state: HardState,
    entries: Vec<Entry>,
}

/// Durable storage; see the module docs.
pub struct DiskStorage {
    mem: MemStorage,
    wal: Wal,
    snap_dir: PathBuf,
    /// Closed segments: sequence number and highest entry index in it.
    closed: Vec<(u64, u64)>,
    /// Highest entry index in the open segment.
    open_max: u64,
    /// The newest snapshot, data included (empty before the first one).
    snapshot: Snapshot,
    /// Held for the life of the store: one process per data directory.
    _lock: File,
    /// The directory's record (format, owner), as checked when it was opened.
    meta: super::meta::DataDirMeta,
}

impl DiskStorage {
    /// Opens (or creates) the data directory of the member `owner` (empty for a tool that
    /// reads any member's; see [`super::meta`]); a new one starts from `bootstrap` (none for a
    /// node that joins a running cluster).
    pub fn open(
        dir: &Path,
        owner: &str,
        bootstrap: super::Bootstrap,
        wal: super::WalOptions,
    ) -> Result<DiskStorage> {
        let super::WalOptions {
            segment_bytes,
            emulate_power_loss,
        } = wal;
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        for d in [dir, &wal_dir, &snap_dir] {
            fs::create_dir_all(d).map_err(|e| storage_error("cannot create", d, e))?;
        }
        let lock = lock_dir(dir)?;
        let meta = super::meta::claim(dir, owner)?;
        let snapshot = load_newest_snapshot(&snap_dir)?;
        let fresh = snapshot.get_metadata().index == 0 && list_segments(&wal_dir)?.is_empty();
        let snap_index = snapshot.get_metadata().index;
        let mut segments = list_segments(&wal_dir)?;
        let recovered = replay(&mut segments, snap_index)?;

        let mem = MemStorage::new();
        {
            let mut core = mem.wl();
            if snap_index > 0 {
                core.apply_snapshot(snapshot.clone())
                    .map_err(|e| Error::Storage(format!("cannot restore the snapshot: {e}")))?;
            }
            // Without a snapshot the configuration starts empty: the bootstrap entries at the
            // head of the log build it as raft re-applies them.
            if let Some(first) = recovered.entries.first() {
                if first.index != snap_index + 1 {
                    return Err(Error::Storage(format!(
                        "the log starts at index {} but the snapshot ends at {snap_index}",
                        first.index
                    )));
                }
            }
            core.append(&recovered.entries)
                .map_err(|e| Error::Storage(format!("cannot rebuild the log: {e}")))?;
            let mut hs = recovered.hard_state;
            hs.commit = hs.commit.max(snap_index);
            core.set_hardstate(hs);
        }

        let mut wal = Wal::open(&wal_dir, segments.last(), segment_bytes)?;
        if emulate_power_loss {
            wal.emulate_power_loss();
        }
        let open_max = segments.last().map_or(0, |s| s.max_index);
        let closed = segments
            .iter()
            .filter(|s| s.seq != wal.seq())
            .map(|s| (s.seq, s.max_index))
            .collect();
        let mut storage = DiskStorage {
            mem,
            wal,
            snap_dir,
            closed,
            open_max,
            snapshot,
            _lock: lock,
            meta,
        };
        if let (true, Some((entries, hard_state))) = (fresh, bootstrap) {
            // A new cluster's first record: the bootstrap log, durable before anything else.
            storage.persist(None, &entries, Some(&hard_state))?;
        }
        Ok(storage)
    }

    /// The directory's record (format, owner), as checked when it was opened.
    pub fn meta(&self) -> &super::meta::DataDirMeta {
        &self.meta
    }

    /// Writes `entries` and then `hard_state` as records of at most [`RECORD_TARGET_BYTES`]
    /// (but for a single larger entry), and makes them durable with one fsync: one Ready of
    /// any size is one durable write, and never a record that recovery would refuse. The
    /// hard state travels in the last record: should the process die between records,
    /// recovery finds a prefix of the new entries and the old hard state, as if the Ready
    /// had been cut short (nothing of it was acknowledged: the fsync had not returned), and
    /// never a commit index beyond the entries it has.
    fn write_entries(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<()> {
        let mut start = 0;
        loop {
            let mut end = start;
            let mut bytes = 0;
            while end < entries.len() {
                let size = entries[end].encoded_len() + 4;
                if end > start && bytes + size > RECORD_TARGET_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            let last = end == entries.len();
            let hard_state = if last { hard_state } else { None };
            self.wal
                .append(&Record::encode(hard_state, &entries[start..end], false))?;
            if last {
                break;
            }
            start = end;
        }
        self.wal.sync()?;
        if let Some(last) = entries.last() {
            self.open_max = last.index;
        }
        if self.wal.is_full() {
            self.rotate()?;
        }
        Ok(())
    }

    /// Starts a new segment that opens with the current hard state, so that older segments
    /// are never needed for it.
    fn rotate(&mut self) -> Result<()> {
        let closed = self.wal.rotate()?;
        self.closed.push((closed, self.open_max));
        let hard_state = self.mem.rl().hard_state().clone();
        self.wal
            .append_sync(&Record::encode(Some(&hard_state), &[], false))
    }

    /// Removes closed segments whose entries all lie at or before `index`.
    fn remove_segments_through(&mut self, index: u64) -> Result<()> {
        let (gone, kept): (Vec<_>, Vec<_>) = self.closed.iter().partition(|(_, max)| *max <= index);
        for (seq, _) in &gone {
            self.wal.remove(*seq)?;
        }
        self.closed = kept;
        Ok(())
    }

    /// Writes `snapshot` durably as the newest and removes older snapshot files.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        write_snapshot_file(&self.snap_dir, snapshot)?;
        self.snapshot = snapshot.clone();
        remove_snapshot_files_but(&self.snap_dir, &snapshot_file_name(snapshot));
        Ok(())
    }
}

/// Takes the data directory's lock: two processes writing one log would corrupt it.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| storage_error("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Storage(format!(
            "data directory {} is in use by another node",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(storage_error("cannot lock", &path, e)),
    }
}

/// The file name of `snapshot` (ordered by index, then term).
fn snapshot_file_name(snapshot: &Snapshot) -> String {
    let meta = snapshot.get_metadata();
    format!("{:020}-{:020}.snap", meta.index, meta.term)
}

/// Removes every snapshot file of `snap_dir` but `keep`. Files being written (`.tmp`) are
/// left alone: a snapshot of this node's own may be under way on another thread.
fn remove_snapshot_files_but(snap_dir: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(snap_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".snap") && name != keep {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `snapshot` to a temporary file, fsyncs, renames, and fsyncs the directory. Older
/// snapshot files stay until the store adopts this one.
pub(super) fn write_snapshot_file(snap_dir: &Path, snapshot: &Snapshot) -> Result<()> {
    let meta = snapshot.get_metadata();
    let name = snapshot_file_name(snapshot);
    let path = snap_dir.join(&name);
    let tmp = snap_dir.join(format!("{name}.tmp"));
    let mut body = Vec::with_capacity(snapshot.data.len() + 64);
    body.extend_from_slice(SNAPSHOT_MAGIC);
    put_message(&mut body, meta);
    body.extend_from_slice(&snapshot.data);
    let crc = crc32fast::hash(&body);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(&crc.to_le_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| storage_error("cannot write snapshot", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| storage_error("cannot rename snapshot", &tmp, e))?;
    sync_dir(snap_dir)
}

/// Replays the log after snapshot index `snap_index`, noting each segment's highest index.
fn replay(segments: &mut [Segment], snap_index: u64) -> Result<Recovered> {
    let mut recovered = Recovered {
        hard_state: HardState::default(),
        entries: Vec::new(),
    };
    let count = segments.len();
    for (i, segment) in segments.iter_mut().enumerate() {
        let mut max_index = 0;
        let path = segment.path.clone();
        replay_segment(&segment.path, i + 1 == count, &mut |payload| {
            let record = Record::decode(payload).map_err(|e| {
                Error::Storage(format!("undecodable log record in {}: {e}", path.display()))
            })?;
            if record.snapshot_installed {
                recovered.entries.clear();
            }
            if let Some(hs) = record.hard_state {
                recovered.hard_state = hs;
            }
            if let Some(last) = record.entries.last() {
                max_index = max_index.max(last.index);
            }
            let fresh: Vec<Entry> = record
                .entries
                .into_iter()
                .filter(|e| e.index > snap_index)
                .collect();
            if let Some(first) = fresh.first() {
                // Later entries replace any that conflict (a follower's log truncation).
                // The log is contiguous, so the overlap follows from the indexes: O(1) per
                // record (a scan here made recovery quadratic in the log length).
                if let Some(start) = recovered.entries.first().map(|e| e.index) {
                    recovered
                        .entries
                        .truncate(first.index.saturating_sub(start) as usize);
                }
                if let Some(prev) = recovered.entries.last() {
                    if prev.index + 1 != first.index {
                        return Err(Error::Storage(format!(
                            "gap in the log in {}: index {} follows {}",
                            path.display(),
                            first.index,
                            prev.index
                        )));
                    }
                }
                recovered.entries.extend(fresh);
            }
            Ok(())
        })?;
        segment.max_index = max_index;
    }
    Ok(recovered)
}

fn load_newest_snapshot(dir: &Path) -> Result<Snapshot> {
    let mut newest: Option<PathBuf> = None;
    for entry in fs::read_dir(dir).map_err(|e| storage_error("cannot list", dir, e))? {
        let path = entry
            .map_err(|e| storage_error("cannot list", dir, e))?
            .path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("snap") if newest.as_ref().is_none_or(|n| path > *n) => newest = Some(path),
            // A snapshot that never got renamed was never complete.
            Some("tmp") => {
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
    }
    let Some(path) = newest else {
        return Ok(Snapshot::default());
    };
    let bytes = fs::read(&path).map_err(|e| storage_error("cannot read", &path, e))?;
    let corrupt = |why: &str| Error::Storage(format!("corrupt snapshot {}: {why}", path.display()));
    if bytes.len() < SNAPSHOT_MAGIC.len() + 8 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("bad header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    let meta_len = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let meta_bytes = body
        .get(12..12 + meta_len)
        .ok_or_else(|| corrupt("metadata cut short"))?;
    let metadata = SnapshotMetadata::decode(meta_bytes).map_err(|e| corrupt(&e.to_string()))?;
    Ok(Snapshot {
        data: body[12 + meta_len..].to_vec(),
        metadata: Some(metadata),
    })
}

mirrored_storage!(DiskStorage);

impl LogStore for DiskStorage {
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        if let Some(snapshot) = snapshot {
            // Received from the leader: it replaces the whole log.
            self.save_snapshot(snapshot)?;
            let hard_state = self.mem.rl().hard_state().clone();
            self.wal
                .append_sync(&Record::encode(Some(&hard_state), &[], true))?;
            self.mem
                .wl()
                .apply_snapshot(snapshot.clone())
                .map_err(|e| Error::Storage(e.to_string()))?;
            // Every older segment is now obsolete: the snapshot holds what they held, and the
            // new segment opens with the hard state.
            self.rotate()?;
            self.remove_segments_through(u64::MAX)?;
        }
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        if let (true, Some(hs)) = (entries.is_empty(), hard_state) {
            let stored = self.mem.rl().hard_state().clone();
            if hs.term == stored.term && hs.vote == stored.vote {
                // Only the commit index moved: it need not survive a power loss (a node
                // learns it again from its leader), so it is written but not waited for. The
                // entries it covers were made durable by earlier Readys, so a disk that keeps
                // the record keeps them too. A follower fsynced twice per write before (the
                // entries, then the commit index the leader told it next), and the second
                // fsync delayed the next write's append.
                self.wal.append(&Record::encode(Some(hs), &[], false))?;
                return super::mirror(&self.mem, entries, hard_state);
            }
        }
        self.write_entries(entries, hard_state)?;
        super::mirror(&self.mem, entries, hard_state)
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        self.mem.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    fn snapshot_sink(&self) -> super::SnapshotSink {
        super::SnapshotSink::Dir(self.snap_dir.clone())
    }

    fn adopt_snapshot(&mut self, snapshot: Snapshot, keep_entries: u64) -> Result<bool> {
        let name = snapshot_file_name(&snapshot);
        if !super::is_newer(&snapshot, &self.snapshot) {
            // One from the leader replaced the log meanwhile: this one is obsolete.
            if name != snapshot_file_name(&self.snapshot) {
                let _ = fs::remove_file(self.snap_dir.join(&name));
            }
            return Ok(false);
        }
        let index = snapshot.get_metadata().index;
        self.snapshot = snapshot;
        remove_snapshot_files_but(&self.snap_dir, &name);
        let compact_to = super::compact(&self.mem, index, keep_entries)?;
        if self.open_max > 0 && self.open_max <= compact_to {
            self.rotate()?;
        }
        self.remove_segments_through(compact_to.saturating_sub(1))?;
        Ok(true)
    }

    fn newest_snapshot(&self) -> Option<&Snapshot> {
        (self.snapshot.get_metadata().index > 0).then_some(&self.snapshot)
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn syncs(&self) -> u64 {
        self.wal.syncs()
    }

    fn sync(&mut self) -> Result<()> {
        self.wal.sync()
    }
}
