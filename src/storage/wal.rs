//! The write-ahead log: numbered segment files of checksummed records.
//!
//! A record is `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`. Segments are
//! `NNNNNNNNNNNNNNNNNNNN.wal`, numbered in write order; a new one starts when the current one
//! passes [`SEGMENT_BYTES`]. Recovery reads every segment in order. A record that is cut
//! short or fails its checksum at the very end of the newest segment is a torn write (the
//! process died mid-write): it is truncated away. Anywhere else it is corruption, and
//! recovery fails naming the file and offset: committed data is never silently dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use crate::limits::DEFAULT_SEGMENT_BYTES;
const HEADER: usize = 8;
/// Largest record written, and accepted on recovery (a larger length field is corruption).
pub const MAX_RECORD: usize = crate::limits::MAX_MESSAGE_BYTES;

pub(crate) fn storage_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// Fsyncs a directory, so that files created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage_error("cannot fsync directory", dir, e))
}

/// One segment as recovery found it.
pub struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    /// Highest raft index of any entry in it (maintained by the caller).
    pub max_index: u64,
}

/// The appending side of the log.
pub struct Wal {
    dir: PathBuf,
    file: File,
    seq: u64,
    len: u64,
    segment_bytes: u64,
    /// Power-loss emulation: bytes written but not yet synced.
    pending: Option<Vec<u8>>,
    /// Fsyncs of segments so far.
    syncs: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Lists the segments of `dir` in order.
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let read = fs::read_dir(dir).map_err(|e| storage_error("cannot list", dir, e))?;
    for entry in read {
        let entry = entry.map_err(|e| storage_error("cannot list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            segments.push(Segment {
                seq,
                path: entry.path(),
                max_index: 0,
            });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Reads every record of one segment, calling `each` with its payload. `newest` says whether
/// a bad record at the end may be a torn write; if so the file is truncated before it.
pub fn replay_segment(
    path: &Path,
    newest: bool,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| storage_error("cannot read", path, e))?;
    let mut offset = 0usize;
    while offset < bytes.len() {
        match parse_record(&bytes[offset..]) {
            Ok(payload) => {
                each(payload)?;
                offset += HEADER + payload.len();
            }
            Err(why) => {
                let rest = &bytes[offset..];
                let reaches_end = record_end(rest).is_none_or(|end| end >= rest.len());
                if newest && reaches_end {
                    tracing::warn!(file = %path.display(), offset, "truncating a torn write at the end of the log: {why}");
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| storage_error("cannot open", path, e))?;
                    file.set_len(offset as u64)
                        .and_then(|_| file.sync_all())
                        .map_err(|e| storage_error("cannot truncate", path, e))?;
                    return Ok(());
                }
                return Err(Error::Storage(format!(
                    "corrupt log record in {} at offset {offset}: {why}",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Where the record starting at `bytes` ends, if its header can be read.
fn record_end(bytes: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    Some(HEADER + len)
}

fn parse_record(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    if bytes.len() < HEADER {
        return Err("record header cut short".into());
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err(format!("record length {len} is impossible"));
    }
    let payload = bytes
        .get(HEADER..HEADER + len)
        .ok_or_else(|| format!("record of {len} bytes cut short"))?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

impl Wal {
    /// Opens the log in `dir` for appending after the newest segment `last` (or a new one).
    pub fn open(dir: &Path, last: Option<&Segment>, segment_bytes: u64) -> Result<Wal> {
        let seq = last.map_or(1, |s| s.seq);
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| storage_error("cannot open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| storage_error("cannot stat", &path, e))?
            .len();
        if last.is_none() {
            sync_dir(dir)?;
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            seq,
            len,
            segment_bytes,
            pending: None,
            syncs: 0,
        })
    }

    /// Test-only emulation of power loss: from now on writes stay in process memory until
    /// `sync`, so a killed process loses exactly what was not yet fsynced (a plain kill keeps
    /// the page cache).
    pub fn emulate_power_loss(&mut self) {
        self.pending.get_or_insert_with(Vec::new);
    }

    /// The sequence number of the segment being written.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// True when the current segment is full and the caller should [`Wal::rotate`].
    pub fn is_full(&self) -> bool {
        self.len >= self.segment_bytes
    }

    /// Appends one record and makes it durable (write + fsync): the group commit point.
    pub fn append_sync(&mut self, payload: &[u8]) -> Result<()> {
        self.append(payload)?;
        self.sync()
    }

    /// Appends one record without waiting for the disk: durable at the next [`Wal::sync`].
    /// A payload over [`MAX_RECORD`] is refused, as recovery would refuse it.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_RECORD {
            return Err(Error::Storage(format!(
                "a log record of {} bytes is over the {MAX_RECORD} byte limit",
                payload.len()
            )));
        }
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let path = segment_path(&self.dir, self.seq);
        match &mut self.pending {
            // Emulated power loss: nothing reaches the file before the sync.
            Some(pending) => pending.extend_from_slice(&record),
            None => self
                .file
                .write_all(&record)
                .map_err(|e| storage_error("cannot write", &path, e))?,
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<()> {
        let path = segment_path(&self.dir, self.seq);
        if let Some(pending) = &mut self.pending {
            self.file
                .write_all(pending)
                .map_err(|e| storage_error("cannot write", &path, e))?;
            pending.clear();
        }
        self.syncs += 1;
        self.file
            .sync_data()
            .map_err(|e| storage_error("cannot fsync", &path, e))
    }

    /// Fsyncs of segments so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Starts the next segment; returns the sequence number of the one just closed.
    pub fn rotate(&mut self) -> Result<u64> {
        self.sync()?;
        let closed = self.seq;
        let path = segment_path(&self.dir, closed + 1);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| storage_error("cannot create", &path, e))?;
        sync_dir(&self.dir)?;
        self.seq = closed + 1;
        self.len = 0;
        Ok(closed)
    }

    /// Deletes a closed segment.
    pub fn remove(&self, seq: u64) -> Result<()> {
        let path = segment_path(&self.dir, seq);
        fs::remove_file(&path).map_err(|e| storage_error("cannot remove", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("raftline-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn replay_all(dir: &Path) -> Result<Vec<Vec<u8>>> {
        let segments = list_segments(dir)?;
        let mut out = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            replay_segment(&s.path, i + 1 == segments.len(), &mut |p| {
                out.push(p.to_vec());
                Ok(())
            })?;
        }
        Ok(out)
    }

    #[test]
    fn records_round_trip_across_rotation() {
        let dir = temp_dir("roundtrip");
        let mut wal = Wal::open(&dir, None, DEFAULT_SEGMENT_BYTES).unwrap();
        wal.append_sync(b"one").unwrap();
        wal.rotate().unwrap();
        wal.append_sync(b"two").unwrap();
        assert_eq!(
            replay_all(&dir).unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn emulated_power_loss_loses_exactly_what_was_not_synced() {
        let dir = temp_dir("power-loss");
        let mut wal = Wal::open(&dir, None, DEFAULT_SEGMENT_BYTES).unwrap();
        wal.emulate_power_loss();
        wal.append_sync(b"synced").unwrap();
        wal.append(b"written, never synced").unwrap();
        drop(wal); // the process dies: nothing but what was synced reached the file
        assert_eq!(replay_all(&dir).unwrap(), vec![b"synced".to_vec()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_tail_is_truncated_and_corruption_before_it_is_refused() {
        // (case, damage to the newest file, expect records or an error)
        type Damage = fn(&mut Vec<u8>);
        let cases: &[(&str, Damage, Option<usize>)] = &[
            (
                "last record cut short",
                |b| b.truncate(b.len() - 3),
                Some(2),
            ),
            (
                "last header cut short",
                |b| b.truncate(b.len() - 8),
                Some(2),
            ),
            (
                "last record checksum wrong",
                |b| *b.last_mut().unwrap() ^= 1,
                Some(2),
            ),
            ("first record flipped", |b| b[HEADER] ^= 0xff, None),
        ];
        for (case, damage, expected) in cases {
            let dir = temp_dir("damage");
            let mut wal = Wal::open(&dir, None, DEFAULT_SEGMENT_BYTES).unwrap();
            for r in [&b"first record"[..], b"second", b"third, torn"] {
                wal.append_sync(r).unwrap();
            }
            drop(wal);
            let path = list_segments(&dir).unwrap().pop().unwrap().path;
            let mut bytes = fs::read(&path).unwrap();
            damage(&mut bytes);
            fs::write(&path, &bytes).unwrap();
            match (replay_all(&dir), expected) {
                (Ok(records), Some(n)) => {
                    assert_eq!(records.len(), *n, "{case}");
                    // Truncated: appending again yields a clean log.
                    let last = list_segments(&dir).unwrap().pop().unwrap();
                    Wal::open(&dir, Some(&last), DEFAULT_SEGMENT_BYTES)
                        .unwrap()
                        .append_sync(b"again")
                        .unwrap();
                    assert_eq!(
                        replay_all(&dir).unwrap().len(),
                        n + 1,
                        "{case}: appends after recovery"
                    );
                }
                (Err(e), None) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("corrupt log record") && msg.contains("offset 0"),
                        "{case}: {msg}"
                    );
                    assert_eq!(e.code(), "ERR_STORAGE", "{case}");
                }
                (other, _) => panic!("{case}: unexpected {other:?}"),
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
