//! One way to treat a poisoned lock. A lock is poisoned when a thread panicked while holding
//! it; every lock in raftline guards state that each writer leaves consistent between its
//! statements (a map insert, a counter, a whole value swapped in), and a panic on the driver
//! already stops the node (`ERR_INTERNAL`). Readers and writers therefore take the data as it
//! is rather than panicking in turn.

use std::sync::{LockResult, PoisonError};

/// The guard of a lock, poisoned or not.
pub trait Recover<G> {
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}
