//! The backup file: what a new cluster is restored from.
//!
//! Layout (integers little-endian):
//! - `RLBACKUP`, then the format version (`u32`, [`BACKUP_FORMAT`]);
//! - the snapshot metadata (`u32` length, protobuf): the index and term the backup was taken
//!   at and the configuration of the cluster it came from;
//! - the state (`u64` length, then [`crate::state_machine::SnapshotData`] bytes: keys with
//!   their revisions, sessions, locks, ephemeral keys, idempotency records, members);
//! - a SHA-256 of everything before it (32 bytes).
//!
//! A file that is cut short, has a byte changed, or is in an unknown format is refused
//! before anything is written from it.

use prost::Message as _;
use raft::eraftpb::{ConfState, SnapshotMetadata};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"RLBACKUP";
/// The format this release writes and reads.
pub const BACKUP_FORMAT: u32 = 1;
const DIGEST_BYTES: usize = 32;

/// A backup, checked and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The log index the state is at, and its term.
    pub index: u64,
    pub term: u64,
    /// The configuration of the cluster the backup came from.
    pub conf_state: ConfState,
    /// The state: [`crate::state_machine::SnapshotData`] bytes.
    pub data: Vec<u8>,
}

impl Backup {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let meta = SnapshotMetadata {
            conf_state: Some(self.conf_state.clone()),
            index: self.index,
            term: self.term,
        };
        let mut out = Vec::with_capacity(self.data.len() + 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BACKUP_FORMAT.to_le_bytes());
        out.extend_from_slice(&(meta.encoded_len() as u32).to_le_bytes());
        meta.encode(&mut out).expect("a Vec grows as needed");
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.data);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Checks and parses a backup file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Backup> {
        let refuse = |why: String| Error::Invalid(format!("not a usable backup: {why}"));
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(refuse("it does not start as a raftline backup does".into()));
        }
        let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != BACKUP_FORMAT {
            return Err(refuse(format!(
                "it is in format {format}; this version reads format {BACKUP_FORMAT}"
            )));
        }
        if bytes.len() < 12 + DIGEST_BYTES {
            return Err(refuse("it is cut short".into()));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_BYTES);
        if Sha256::digest(body).as_slice() != digest {
            return Err(refuse(
                "its checksum does not match: the file is corrupt or cut short".into(),
            ));
        }
        let mut rest = &body[12..];
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(refuse("a part is cut short".into()));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let meta_len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let meta = SnapshotMetadata::decode(take(meta_len)?)
            .map_err(|e| refuse(format!("undecodable metadata: {e}")))?;
        let data_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let data_len = usize::try_from(data_len).map_err(|_| refuse("oversized state".into()))?;
        let data = take(data_len)?.to_vec();
        if !rest.is_empty() {
            return Err(refuse("unexpected bytes after the state".into()));
        }
        // The state itself must parse: a backup that cannot be restored is refused now.
        crate::state_machine::SnapshotData::decode(&data)
            .map_err(|e| refuse(format!("undecodable state: {e}")))?;
        Ok(Backup {
            index: meta.index,
            term: meta.term,
            conf_state: meta.conf_state.unwrap_or_default(),
            data,
        })
    }
}

/// The hex SHA-256 of `bytes` (what `sha256sum` prints for the file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::{Command, KvStore, SnapshotData};

    fn sample() -> Backup {
        let mut kv = KvStore::default();
        kv.apply_entry(
            7,
            2,
            Command::Set {
                key: "k".into(),
                value: serde_bytes::ByteBuf::from(b"v".to_vec()),
            },
            false,
        );
        let data = SnapshotData {
            kv,
            app: None,
            members: vec![("n1".into(), "ws://127.0.0.1:1".into())],
            conf_epoch: 1,
        }
        .encode();
        Backup {
            index: 7,
            term: 2,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            },
            data,
        }
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let backup = sample();
        assert_eq!(Backup::decode(&backup.encode()).unwrap(), backup);
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let bytes = sample().encode();
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(Backup::decode(&flipped).is_err(), "flipped byte {at}");
            assert!(Backup::decode(&bytes[..at]).is_err(), "cut at {at}");
        }
        let err = Backup::decode(b"hello world, not a backup").unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID");
        assert!(err.to_string().contains("not a usable backup"), "{err}");
    }
}
