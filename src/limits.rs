//! Sizes that more than one layer must agree on, in one place: the configuration checks
//! proposals against the frame the transport accepts, and the log stores a snapshot as large
//! as the transport delivers. (The transport and the log once disagreed: a follower far
//! behind crawled, and a huge Ready could not be read back after a restart.)

/// Largest WebSocket message a listener accepts; larger ones close the connection before
/// decoding. A proposal is at most half of it, so an append of one proposal always travels
/// whole.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Largest raft message (a snapshot) the transport accepts in chunks, and largest record the
/// write-ahead log writes and reads back: whatever arrives can be stored and recovered.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// By default a write-ahead log segment is closed and a new one started past this size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
