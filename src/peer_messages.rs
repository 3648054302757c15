//! What the core and the transport agree on about peer messages: which messages are client
//! requests forwarded to the leader, what became of messages after they left, and the reason
//! a leader gives a node that is no longer a member. Neither layer imports the other; the
//! runtime carries these between them.

use raft::eraftpb::{Message, MessageType};

/// A write or a read index request on its way to the leader (the raft crate never sends
/// one again: a node forwards it in its own name, and a writer holds it while the leader
/// cannot be reached). Reads the raw type: a hostile message may carry a type no variant has.
pub fn is_forwarded_request(m: &Message) -> bool {
    m.msg_type == MessageType::MsgPropose as i32 || m.msg_type == MessageType::MsgReadIndex as i32
}

/// What became of raft messages after they left the driver, for the raft crate's
/// `report_unreachable` / `report_snapshot` (a leader whose snapshot was lost would otherwise
/// leave that follower paused until the next election).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Messages to this peer were dropped (no connection, full queue, cut off).
    Unreachable(u64),
    /// This peer closed our connection because we are not a member (any more).
    NotAMember(u64),
    /// A snapshot to this peer was written to its connection, or was lost.
    Snapshot { to: u64, delivered: bool },
    /// This peer's host refused a connection: nothing listens at its address, so its node
    /// is stopped or its process is gone (killed, crashed). A live node, even one cut off,
    /// never causes this (see `core::leadership`: a follower fails over from it early).
    Gone(u64),
}

/// The reason with which a leader closes the connection of a node that is no longer a
/// member, so that the node learns its removal even if it missed the entry.
pub const NOT_A_MEMBER: &str = "not a member of this cluster";
