//! The data directory's own record (`raftline.meta`): the format version of its files and
//! the member that owns it.
//!
//! The format version lets a later release read (and migrate) a directory written by this
//! one, and lets this release refuse, with a clear error, one written by a later release in
//! a format it does not know. The owner stops a directory from being started under another
//! member's name: that member's votes and log would be this node's, and two members would
//! then speak for one (a split vote, or an entry acknowledged twice).
//!
//! The file is text, one `key value` per line, written to a temporary file, fsynced and
//! renamed. Directories written before it existed hold format 1: they get the file on their
//! next start.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::wal::{storage_error, sync_dir};
use crate::error::{Error, Result};

/// The format of the files this release writes: the WAL records and snapshot files of
/// `storage::disk`. Raise it (and add a step to [`migrate`]) with any change to them.
pub const DATA_FORMAT: u32 = 1;
/// The oldest format this release still reads.
pub const OLDEST_DATA_FORMAT: u32 = 1;
const FILE: &str = "raftline.meta";

/// What the record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirMeta {
    pub format: u32,
    /// The member whose directory this is (empty: not recorded yet).
    pub node: String,
}

impl DataDirMeta {
    fn encode(&self) -> String {
        format!("format {}\nnode {}\n", self.format, self.node)
    }

    fn parse(text: &str) -> std::result::Result<DataDirMeta, String> {
        let mut meta = DataDirMeta {
            format: 0,
            node: String::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "format" => meta.format = value.trim().parse().map_err(|_| "bad format line")?,
                "node" => meta.node = value.trim().to_string(),
                // Keys a later release adds are left for it.
                _ => {}
            }
        }
        if meta.format == 0 {
            return Err("no format line".into());
        }
        Ok(meta)
    }
}

/// Reads the record of `dir`; `None` when there is none (a new directory, or one written
/// before the record existed).
pub fn read(dir: &Path) -> Result<Option<DataDirMeta>> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => DataDirMeta::parse(&text)
            .map(Some)
            .map_err(|e| Error::Storage(format!("corrupt {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(storage_error("cannot read", &path, e)),
    }
}

/// Writes the record durably.
pub fn write(dir: &Path, meta: &DataDirMeta) -> Result<()> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(meta.encode().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| storage_error("cannot write", &path, e))?;
    sync_dir(dir)
}

/// Checks the record of `dir` before its files are read, for the member `node` (empty: a
/// tool that reads any member's directory), migrates an older format, and records this
/// release's format and the owner. Refuses a format newer than this release reads, and a
/// directory that belongs to another member.
pub fn claim(dir: &Path, node: &str) -> Result<DataDirMeta> {
    let found = read(dir)?.unwrap_or(DataDirMeta {
        format: OLDEST_DATA_FORMAT,
        node: String::new(),
    });
    if found.format > DATA_FORMAT {
        return Err(Error::Storage(format!(
            "data directory {} is in format {}, written by a later raftline; this version reads \
             formats {OLDEST_DATA_FORMAT} to {DATA_FORMAT}",
            dir.display(),
            found.format
        )));
    }
    if found.format < OLDEST_DATA_FORMAT {
        return Err(Error::Storage(format!(
            "data directory {} is in format {}, older than this version reads \
             ({OLDEST_DATA_FORMAT}): start it with an older release first",
            dir.display(),
            found.format
        )));
    }
    if !node.is_empty() && !found.node.is_empty() && found.node != node {
        return Err(Error::Invalid(format!(
            "data directory {} belongs to member \"{}\", not \"{node}\"",
            dir.display(),
            found.node
        )));
    }
    migrate(dir, found.format)?;
    let meta = DataDirMeta {
        format: DATA_FORMAT,
        node: if node.is_empty() {
            found.node.clone()
        } else {
            node.to_string()
        },
    };
    if read(dir)?.as_ref() != Some(&meta) && !node.is_empty() {
        write(dir, &meta)?;
    }
    Ok(meta)
}

/// Brings the files of `dir` from format `from` to [`DATA_FORMAT`], one format at a time.
/// (Format 1 is the first: nothing to do yet.)
fn migrate(_dir: &Path, from: u32) -> Result<()> {
    debug_assert!((OLDEST_DATA_FORMAT..=DATA_FORMAT).contains(&from));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "raftline-meta-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_directory_is_claimed_once_and_refused_to_others_and_to_unknown_formats() {
        let dir = temp();
        assert_eq!(read(&dir).unwrap(), None);
        let meta = claim(&dir, "n1").unwrap();
        assert_eq!((meta.format, meta.node.as_str()), (DATA_FORMAT, "n1"));
        assert_eq!(read(&dir).unwrap(), Some(meta.clone()));
        assert_eq!(claim(&dir, "n1").unwrap(), meta);
        // A tool reads any member's directory, and records nothing.
        assert_eq!(claim(&dir, "").unwrap(), meta);
        let err = claim(&dir, "n2").unwrap_err().to_string();
        assert!(err.contains("belongs to member \"n1\""), "{err}");
        write(
            &dir,
            &DataDirMeta {
                format: DATA_FORMAT + 1,
                node: "n1".into(),
            },
        )
        .unwrap();
        let err = claim(&dir, "n1").unwrap_err().to_string();
        assert!(err.contains("written by a later raftline"), "{err}");
        fs::write(dir.join(FILE), "nonsense\n").unwrap();
        assert!(claim(&dir, "n1").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
