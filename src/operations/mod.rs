//! Day-two operations on a member's data: backups and restoring them, reading a stopped
//! member's data directory, and recovering a cluster that lost its quorum.
//!
//! 1. [`backup`]: the backup file format (a snapshot of the state with its metadata, and a
//!    SHA-256 of the whole). A running node makes one at a linearizable index
//!    (`NodeHandle::backup`); [`replay`] makes one from a stopped member's directory.
//! 2. [`restore`]: seeds a new data directory from a backup, for a member of a new cluster
//!    (every member restores the same file).
//! 3. [`replay`]: the state of a data directory at its commit index, read without starting
//!    a node (what an operator inspects).
//! 4. [`recovery`]: rewrites a survivor's log so that it restarts as the only member of a
//!    new cluster, keeping its data (etcd's `--force-new-cluster`).

pub mod backup;
pub mod recovery;
pub mod replay;
pub mod restore;

pub use backup::{Backup, BACKUP_FORMAT};
pub use replay::DirState;
