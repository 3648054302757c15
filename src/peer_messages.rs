//! What the core and the transport agree on about peer messages: which messages are client
//! requests forwarded to the leader, the deadline a forwarded write carries, what became of
//! messages after they left, and the reason a leader gives a node that is no longer a
//! member. Neither layer imports the other; the runtime carries these between them.

use std::sync::OnceLock;
use std::time::Instant;

use raft::eraftpb::{Message, MessageType};

/// A write or a read index request on its way to the leader (the raft crate never sends
/// one again: a node forwards it in its own name, and a writer holds it while the leader
/// cannot be reached). Reads the raw type: a hostile message may carry a type no variant has.
pub fn is_forwarded_request(m: &Message) -> bool {
    m.msg_type == MessageType::MsgPropose as i32 || m.msg_type == MessageType::MsgReadIndex as i32
}

/// Bytes of a request id in an entry's or a ReadIndex message's context: the proposing
/// node's raft id, its incarnation and a sequence number (see `core::requests`).
pub const REQUEST_ID_BYTES: usize = 24;
/// Bytes of the deadline that follows the request id of a write forwarded to the leader.
pub const DEADLINE_BYTES: usize = 8;

/// The instant deadlines are counted from in contexts: this process's, so that a deadline
/// means something only to the node that wrote it (see [`overdue`]).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `request_id` followed by `deadline`: the context of a write that a follower forwards to
/// its leader. A writer holds forwarded requests while the leader cannot be reached, and
/// must not send a write after its caller's deadline: the caller was told `ERR_TIMEOUT`,
/// and a write that commits when the connection comes back, perhaps minutes later, would
/// overwrite what was written since.
pub fn with_deadline(mut request_id: Vec<u8>, deadline: Instant) -> Vec<u8> {
    let nanos = deadline.saturating_duration_since(epoch()).as_nanos();
    let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
    request_id.extend_from_slice(&nanos.to_be_bytes());
    request_id
}

/// Whether `context` is a request of node `own` whose deadline passed before `now`. Only a
/// node's own deadlines are read: a leader that stepped down forwards its followers'
/// writes on, and their deadlines count from another process's epoch.
pub fn overdue(context: &[u8], own: u64, now: Instant) -> bool {
    if context.len() != REQUEST_ID_BYTES + DEADLINE_BYTES {
        return false;
    }
    let word = |i: usize| u64::from_be_bytes(context[i..i + 8].try_into().unwrap());
    word(0) == own && epoch() + std::time::Duration::from_nanos(word(REQUEST_ID_BYTES)) <= now
}

/// Drops from `batch` the forwarded writes of node `own` whose deadline passed before `now`
/// (the entries of a proposal one by one); returns how many entries went.
pub fn drop_overdue(batch: &mut Vec<Message>, own: u64, now: Instant) -> usize {
    let mut dropped = 0;
    for m in batch.iter_mut() {
        if m.msg_type == MessageType::MsgPropose as i32 {
            let before = m.entries.len();
            m.entries.retain(|e| !overdue(&e.context, own, now));
            dropped += before - m.entries.len();
        }
    }
    batch.retain(|m| m.msg_type != MessageType::MsgPropose as i32 || !m.entries.is_empty());
    dropped
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

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;
    use std::time::Duration;

    fn id(origin: u64, seq: u64) -> Vec<u8> {
        [origin, 7, seq]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }

    fn proposal(contexts: Vec<Vec<u8>>) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.entries = contexts
            .into_iter()
            .map(|context| Entry {
                context,
                ..Default::default()
            })
            .collect();
        m
    }

    #[test]
    fn a_forwarded_write_is_dropped_once_its_own_deadline_passed_and_no_other() {
        // "Now" a minute ahead: every deadline here comes after the epoch, set at the first
        // context made.
        let now = Instant::now() + Duration::from_secs(60);
        let past = now - Duration::from_millis(1);
        let later = now + Duration::from_secs(1);
        let mut batch = vec![
            // Phase 1: one proposal, one entry overdue and one not.
            proposal(vec![
                with_deadline(id(1, 1), past),
                with_deadline(id(1, 2), later),
            ]),
            // Phase 2: a proposal all overdue goes whole.
            proposal(vec![with_deadline(id(1, 3), past)]),
            // Phase 3: another node's deadline (another process's epoch) and a request id
            // without a deadline (the leader's own write) are never read.
            proposal(vec![with_deadline(id(2, 1), past), id(1, 4)]),
        ];
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        batch.push(heartbeat);
        assert_eq!(drop_overdue(&mut batch, 1, now), 2);
        let left: Vec<Vec<Vec<u8>>> = batch
            .iter()
            .map(|m| m.entries.iter().map(|e| e.context.clone()).collect())
            .collect();
        assert_eq!(
            left,
            vec![
                vec![with_deadline(id(1, 2), later)],
                vec![with_deadline(id(2, 1), past), id(1, 4)],
                vec![],
            ]
        );
    }
}
