//! Inbound screening: every raft message from the wire passes here before the raft crate
//! sees it. A message that no correct peer could send is refused with the reason, and the
//! connection that carried it is closed. Two kinds of message are refused:
//!
//! - those the raft crate would panic on or be corrupted by (unknown types, local types,
//!   entries that rewrite committed ones, terms near `u64::MAX`, a snapshot without a
//!   configuration), so that no byte from the wire can take a node down;
//! - those that contradict what this node knows for certain, so that a peer that lies
//!   cannot depose a leader or install a second one: a second leader in one term, a
//!   higher term while this node's leader is known to be alive (check-quorum: no correct
//!   election can have happened), a leadership hand-over the leader never started, an
//!   acknowledgement of entries the leader never had.
//!
//! Everything here looks at the message and at the raft state; nothing changes.

use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{Raft, StateRole, Storage, INVALID_ID};

/// The largest term or index accepted: JavaScript numbers are exact up to here, so terms
/// (the fencing token) and indexes stay exact in JS. At one election per millisecond a
/// cluster would need 285 000 years to get there.
pub const MAX_EXACT: u64 = (1 << 53) - 1;

/// How far beyond this node's term a message may be. A node that was away sees terms that
/// moved on by the elections it missed; more than this many is a lie (16 million elections).
pub const MAX_TERM_JUMP: u64 = 1 << 24;

/// What to do with a message from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the raft crate.
    Step,
    /// Drop it, keep the connection: a correct peer may send it, but only with knowledge
    /// this node has reason to doubt (a newer term while its leader is alive).
    Ignore(String),
    /// No correct peer sends it: close the connection with this reason.
    Refuse(String),
}

/// What this node knows of a message's sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sender {
    /// On a leader: the sender has said nothing in this term for an election timeout (see
    /// `check_leadership`).
    pub silent: bool,
    /// The sender proved who it is (the cluster secret, or a TLS certificate naming it).
    pub authenticated: bool,
}

/// Checks a message from the wire. The message may be adjusted where a correct peer's
/// message is fine but for a field the raft crate would trust too far.
pub fn screen<S: Storage>(raft: &Raft<S>, m: &mut Message, sender: Sender) -> Verdict {
    let silent_sender = sender.silent;
    let checks = || -> Result<Option<String>, String> {
        let kind = check_form(raft.id, m)?;
        // A voter that proved who it is may be far ahead (a member cut off and walked ahead,
        // by a bug or before authentication): raft's way back is that the others take its
        // term; refusing it left the member out for good. Anyone else stays within reach.
        let proven_voter = sender.authenticated && raft.prs().conf().voters().contains(m.from);
        check_numbers(raft, kind, m, proven_voter)?;
        // Older terms: the raft crate drops them, or answers with its own term.
        if m.term != 0 && m.term < raft.term {
            return Ok(None);
        }
        if let Some(doubt) = check_leadership(raft, kind, m, silent_sender)? {
            return Ok(Some(doubt));
        }
        check_content(raft, kind, m)?;
        Ok(None)
    };
    match checks() {
        Err(reason) => Verdict::Refuse(reason),
        Ok(Some(doubt)) => Verdict::Ignore(doubt),
        Ok(None) => {
            adjust(raft, m);
            Verdict::Step
        }
    }
}

/// The message type, if the message is well formed and addressed to this node.
fn check_form(id: u64, m: &Message) -> Result<MessageType, String> {
    use MessageType::*;
    let kind = MessageType::from_i32(m.msg_type)
        .ok_or_else(|| format!("unknown message type {}", m.msg_type))?;
    if raft::raw_node::is_local_msg(kind) {
        return Err(format!("{kind:?} is local and never travels"));
    }
    if kind == MsgTransferLeader {
        // Transfers start on the leader itself (`transfer_leader`); none is forwarded.
        return Err("leadership transfers are never forwarded".into());
    }
    if m.to != id {
        return Err(format!("addressed to {} instead of this node", m.to));
    }
    if m.from == INVALID_ID || m.from == id {
        return Err(format!("impossible sender {}", m.from));
    }
    if let Some(e) = m
        .entries
        .iter()
        .find(|e| EntryType::from_i32(e.entry_type).is_none())
    {
        return Err(format!("unknown entry type {}", e.entry_type));
    }
    // Forwarded proposals and read requests travel without a term (a follower forwards
    // them on, and the raft crate panics on one that carries a term); all else has one.
    let forwarded = matches!(kind, MsgPropose | MsgReadIndex);
    if m.term == 0 && !forwarded {
        return Err(format!("{kind:?} without a term"));
    }
    if m.term != 0 && forwarded {
        return Err(format!("{kind:?} with a term"));
    }
    Ok(kind)
}

/// Terms and indexes within what a correct cluster reaches (and, but from `proven_voter`,
/// terms within [`MAX_TERM_JUMP`] of this node's).
fn check_numbers<S: Storage>(
    raft: &Raft<S>,
    kind: MessageType,
    m: &Message,
    proven_voter: bool,
) -> Result<(), String> {
    let snapshot = m.snapshot.as_ref().map(|s| s.get_metadata());
    let numbers = [
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.commit_term,
        m.reject_hint,
    ]
    .into_iter()
    .chain(m.entries.iter().flat_map(|e| [e.term, e.index]))
    .chain(snapshot.into_iter().flat_map(|s| [s.term, s.index]));
    if let Some(n) = numbers.into_iter().find(|&n| n > MAX_EXACT) {
        return Err(format!("term or index {n} beyond 2^53"));
    }
    if !proven_voter && m.term > raft.term.saturating_add(MAX_TERM_JUMP) {
        return Err(format!(
            "{kind:?} at term {}, {} beyond this node's",
            m.term,
            m.term - raft.term
        ));
    }
    Ok(())
}

/// Messages only the leader of their term sends.
fn from_leader_only(kind: MessageType) -> bool {
    use MessageType::*;
    matches!(
        kind,
        MsgAppend | MsgHeartbeat | MsgSnapshot | MsgTimeoutNow | MsgReadIndexResp
    )
}

/// This node has reason to believe its leader alive, so that a newer term is doubtful. With
/// check-quorum, a leader steps down by itself within an election timeout of losing its
/// quorum, and a follower that heard from its leader within that time refuses to elect
/// another: ignoring a newer term meanwhile delays a correct newcomer by at most that
/// long. A transfer in progress is the exception: the transferee's newer term is expected.
fn leader_alive<S: Storage>(raft: &Raft<S>) -> bool {
    raft.check_quorum
        && match raft.state {
            StateRole::Leader => raft.lead_transferee.is_none(),
            StateRole::Follower => {
                raft.leader_id != INVALID_ID && raft.election_elapsed < raft.election_timeout()
            }
            _ => false,
        }
}

/// `Err` for what no correct peer sends, `Ok(Some(doubt))` for what one may send only
/// when this node's view is out of date, which it has reason to doubt.
fn check_leadership<S: Storage>(
    raft: &Raft<S>,
    kind: MessageType,
    m: &Message,
    silent_sender: bool,
) -> Result<Option<String>, String> {
    use MessageType::*;
    let leader = raft.leader_id;
    if from_leader_only(kind) && m.term == raft.term && leader != INVALID_ID && m.from != leader {
        return Err(format!(
            "{kind:?} from {} in term {}, whose leader is {leader}",
            m.from, m.term
        ));
    }
    let voters = raft.prs().conf().voters();
    if matches!(kind, MsgRequestVote | MsgRequestPreVote)
        && !voters.contains(m.from)
        && !voters.ids().is_empty()
    {
        // Only voters campaign; a node this one does not know as a voter yet can win
        // without this vote (this node is behind).
        return Ok(Some(format!("vote request from {}, no voter", m.from)));
    }
    if kind == MsgTimeoutNow && (m.term != raft.term || m.from != leader) {
        // A leader hands over only to a follower it has been replicating to.
        return Ok(Some("MsgTimeoutNow not from this node's leader".into()));
    }
    if m.term > raft.term && leader_alive(raft) {
        // The raft crate ignores ordinary (pre-)vote requests in that case by itself: a
        // correct node that was cut off sends them. A forced (transfer) vote to a follower
        // is normal (its leader handed over); to a leader not handing over it is not.
        let ordinary_vote = matches!(kind, MsgRequestVote | MsgRequestPreVote)
            && m.context.as_slice() != raft::CAMPAIGN_TRANSFER;
        let transfer_vote = kind == MsgRequestVote && raft.state == StateRole::Follower;
        // A voter can be stranded in a newer term: its pre-vote won while the leader's lease
        // lapsed (a stalled machine), then its vote lost. It refuses the leader's older term
        // and answers each heartbeat with its own, which is how raft brings it back: the
        // leader steps down and a new election includes it. A stranded voter has said
        // nothing in this term; a voter that answers in time is not stranded.
        let stranded_voter = raft.state == StateRole::Leader
            && silent_sender
            && matches!(kind, MsgAppendResponse | MsgHeartbeatResponse)
            && voters.contains(m.from);
        if !ordinary_vote && !transfer_vote && !stranded_voter {
            return Ok(Some(format!(
                "{kind:?} at term {} while the leader of term {} is alive",
                m.term, raft.term
            )));
        }
    }
    Ok(None)
}

/// Conf change entries must decode, with known change types and transition: the raft
/// crate reads those enums with a panic for unknown values.
fn check_conf_changes(entries: &[raft::eraftpb::Entry]) -> Result<(), String> {
    use prost::Message as _;
    use raft::eraftpb::{ConfChange, ConfChangeTransition, ConfChangeType, ConfChangeV2};
    for e in entries {
        let known = match e.get_entry_type() {
            EntryType::EntryNormal => continue,
            EntryType::EntryConfChange => ConfChange::decode(e.data.as_slice())
                .is_ok_and(|cc| ConfChangeType::from_i32(cc.change_type).is_some()),
            EntryType::EntryConfChangeV2 => {
                ConfChangeV2::decode(e.data.as_slice()).is_ok_and(|cc| {
                    ConfChangeTransition::from_i32(cc.transition).is_some()
                        && cc
                            .changes
                            .iter()
                            .all(|c| ConfChangeType::from_i32(c.change_type).is_some())
                })
            }
        };
        if !known {
            return Err(format!("malformed conf change in entry {}", e.index));
        }
    }
    Ok(())
}

fn check_content<S: Storage>(raft: &Raft<S>, kind: MessageType, m: &Message) -> Result<(), String> {
    use MessageType::*;
    check_conf_changes(&m.entries)?;
    let log = &raft.raft_log;
    match kind {
        MsgPropose if m.entries.is_empty() => Err("empty proposal".into()),
        MsgReadIndex | MsgReadIndexResp if m.entries.len() != 1 => {
            Err("read index message must carry exactly one entry".into())
        }
        MsgAppend => {
            // Only the dummy entry 0 has term 0; the raft crate reads any index beyond its
            // log as term 0, so such an append would "match" there and leave a gap.
            if m.index != 0 && m.log_term == 0 {
                return Err("append after an entry without a term".into());
            }
            for (i, e) in m.entries.iter().enumerate() {
                if e.term == 0 {
                    return Err(format!("append entry {} without a term", e.index));
                }
                if Some(e.index) != m.index.checked_add(i as u64 + 1) {
                    return Err("append entries are not contiguous".into());
                }
                if e.term > m.term || e.term < m.log_term {
                    return Err(format!("append entry {} has an impossible term", e.index));
                }
            }
            if m.log_term > m.term {
                return Err("append follows an entry of a later term".into());
            }
            if m.term >= raft.term && log.match_term(m.index, m.log_term) {
                if let Some(e) = m.entries.iter().find(|e| {
                    e.index <= log.committed && log.term(e.index).ok().is_none_or(|t| t != e.term)
                }) {
                    return Err(format!("append rewrites committed entry {}", e.index));
                }
            }
            Ok(())
        }
        MsgAppendResponse if raft.state == StateRole::Leader && m.term == raft.term => {
            let last = log.last_index();
            if m.index > last || (m.reject && m.reject_hint > last) {
                return Err(format!(
                    "acknowledges index {} beyond the leader's last {last}",
                    m.index.max(m.reject_hint)
                ));
            }
            Ok(())
        }
        MsgSnapshot => {
            let Some(snapshot) = m.snapshot.as_ref() else {
                return Err("snapshot message without a snapshot".into());
            };
            let meta = snapshot.get_metadata();
            let conf = meta.get_conf_state();
            if conf.voters.is_empty()
                || conf.voters.iter().any(|v| conf.learners.contains(v))
                || meta.index == 0
                || meta.term == 0
                || meta.term > m.term
            {
                return Err("snapshot with an invalid configuration".into());
            }
            if !conf.voters.contains(&m.from) && !conf.voters_outgoing.contains(&m.from) {
                return Err("snapshot whose configuration leaves out its sender".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Fields a correct peer sets but the raft crate would trust too far.
fn adjust<S: Storage>(raft: &Raft<S>, m: &mut Message) {
    use MessageType::*;
    match m.get_msg_type() {
        // A vote request's commit lets the receiver commit up to it ("commit by vote"), with
        // no leader vouching: an optimisation this node does without.
        MsgRequestVote | MsgRequestPreVote => {
            m.commit = 0;
            m.commit_term = 0;
        }
        // The leader believes we hold entries we lost (a torn tail truncated on restart).
        // The raft crate would panic; a correct leader sends min(commit, match): clamp,
        // answer, and let the leader probe back down.
        MsgHeartbeat => m.commit = m.commit.min(raft.raft_log.last_index()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    //! The rules that need a leader's identity, which the socket suite cannot borrow from a
    //! live leader (its connection holds the name): checked here on a real raft node.
    use super::*;
    use raft::eraftpb::{ConfState, Entry, Snapshot};
    use raft::storage::MemStorage;
    use raft::{Config, RawNode};

    const ME: u64 = 1;
    const LEADER: u64 = 2;
    const OTHER: u64 = 3;

    fn msg(kind: MessageType, from: u64, term: u64, tweak: impl FnOnce(&mut Message)) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = from;
        m.to = ME;
        m.term = term;
        tweak(&mut m);
        m
    }

    fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term,
                data: b"x".to_vec(),
                ..Default::default()
            })
            .collect()
    }

    /// Node 1 of {1, 2, 3}, following 2 in term 2 with entries 1..=5, 3 of them committed.
    fn follower() -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let config = Config {
            id: ME,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&config, storage, &logger).unwrap();
        let append = msg(MessageType::MsgAppend, LEADER, 2, |m| {
            m.entries = entries(1, 5, 2);
            m.commit = 3;
        });
        assert_eq!(
            screen(&node.raft, &mut append.clone(), Sender::default()),
            Verdict::Step
        );
        node.step(append).unwrap();
        persist(&mut node);
        assert_eq!(node.raft.leader_id, LEADER);
        assert_eq!(node.raft.raft_log.committed, 3);
        node
    }

    /// Writes what the node's Ready asks to store, as a driver would.
    fn persist(node: &mut RawNode<MemStorage>) {
        let ready = node.ready();
        let store = node.store().clone();
        store.wl().append(ready.entries()).unwrap();
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        node.advance(ready);
    }

    fn refused(node: &RawNode<MemStorage>, mut m: Message, why: &str) {
        match screen(&node.raft, &mut m, Sender::default()) {
            Verdict::Refuse(reason) => assert!(reason.contains(why), "{reason} lacks {why}"),
            other => panic!("expected a refusal for {why}, got {other:?}"),
        }
    }

    #[test]
    fn the_leaders_name_cannot_rewrite_history() {
        let mut node = follower();
        let rewrite = msg(MessageType::MsgAppend, LEADER, 2, |m| {
            m.index = 1;
            m.log_term = 2;
            m.entries = entries(2, 3, 1);
        });
        refused(&node, rewrite, "impossible term");
        // A newer term is heard once the leader has been silent for an election timeout.
        node.raft.election_elapsed = node.raft.election_timeout();
        let rewrite = msg(MessageType::MsgAppend, LEADER, 3, |m| {
            m.index = 1;
            m.log_term = 2;
            m.entries = entries(2, 3, 3);
        });
        refused(&node, rewrite, "rewrites committed entry 2");
        let future = msg(MessageType::MsgAppend, LEADER, 2, |m| {
            m.index = 5;
            m.log_term = 2;
            m.entries = entries(6, 6, 7);
        });
        refused(&node, future, "impossible term");
        // The raft crate reads any index beyond its log as term 0: this "matched" at 7 and
        // appended with a gap (a panic), found by the fuzzer.
        let beyond = msg(MessageType::MsgAppend, LEADER, 2, |m| {
            m.index = 7;
            m.log_term = 0;
            m.entries = entries(8, 8, 2);
        });
        refused(&node, beyond, "without a term");
        let gap = msg(MessageType::MsgAppend, LEADER, 2, |m| {
            m.index = 5;
            m.log_term = 2;
            m.entries = vec![entries(6, 6, 2)[0].clone(), entries(8, 8, 2)[0].clone()];
        });
        refused(&node, gap, "not contiguous");
    }

    #[test]
    fn a_commit_beyond_the_log_is_clamped_not_trusted() {
        let mut node = follower();
        let mut beat = msg(MessageType::MsgHeartbeat, LEADER, 2, |m| m.commit = 1_000);
        assert_eq!(
            screen(&node.raft, &mut beat, Sender::default()),
            Verdict::Step
        );
        assert_eq!(beat.commit, 5, "clamped to the last index");
        node.step(beat).unwrap(); // used to panic in the raft crate
        let mut vote = msg(MessageType::MsgRequestPreVote, OTHER, 3, |m| {
            m.commit = 5;
            m.commit_term = 2;
        });
        screen(&node.raft, &mut vote, Sender::default());
        assert_eq!((vote.commit, vote.commit_term), (0, 0), "no commit by vote");
    }

    #[test]
    fn snapshots_must_come_from_a_voter_of_their_own_configuration() {
        let node = follower();
        let snapshot = |voters: Vec<u64>, term: u64| {
            let mut s = Snapshot::default();
            s.mut_metadata().index = 10;
            s.mut_metadata().term = term;
            s.mut_metadata().conf_state = Some(ConfState::from((voters, vec![])));
            s
        };
        let without_sender = msg(MessageType::MsgSnapshot, LEADER, 2, |m| {
            m.snapshot = Some(snapshot(vec![1, 3], 2))
        });
        refused(&node, without_sender, "leaves out its sender");
        let later_term = msg(MessageType::MsgSnapshot, LEADER, 2, |m| {
            m.snapshot = Some(snapshot(vec![1, 2, 3], 3))
        });
        refused(&node, later_term, "invalid configuration");
        // Term 0 "matches" beyond the log: the raft crate committed there (a panic).
        let term_zero = msg(MessageType::MsgSnapshot, LEADER, 2, |m| {
            m.snapshot = Some(snapshot(vec![1, 2, 3], 0))
        });
        refused(&node, term_zero, "invalid configuration");
        let mut fine = msg(MessageType::MsgSnapshot, LEADER, 2, |m| {
            m.snapshot = Some(snapshot(vec![1, 2, 3], 2))
        });
        assert_eq!(
            screen(&node.raft, &mut fine, Sender::default()),
            Verdict::Step
        );
    }

    #[test]
    fn a_follower_doubts_newer_terms_while_its_leader_is_alive() {
        let mut node = follower();
        let newer = || {
            msg(MessageType::MsgAppend, OTHER, 3, |m| {
                m.index = 5;
                m.log_term = 2;
            })
        };
        assert!(matches!(
            screen(&node.raft, &mut newer(), Sender::default()),
            Verdict::Ignore(_)
        ));
        let mut timeout_now = msg(MessageType::MsgTimeoutNow, OTHER, 2, |_| {});
        assert!(matches!(
            screen(&node.raft, &mut timeout_now, Sender::default()),
            Verdict::Refuse(_)
        ));
        let mut from_leader = msg(MessageType::MsgTimeoutNow, LEADER, 2, |_| {});
        assert_eq!(
            screen(&node.raft, &mut from_leader, Sender::default()),
            Verdict::Step
        );
        // A transferee's forced vote is normal for a follower.
        let mut forced = msg(MessageType::MsgRequestVote, OTHER, 3, |m| {
            m.index = 5;
            m.log_term = 2;
            m.context = raft::CAMPAIGN_TRANSFER.to_vec();
        });
        assert_eq!(
            screen(&node.raft, &mut forced, Sender::default()),
            Verdict::Step
        );
        // Once the leader has been silent for an election timeout, newer terms are heard.
        for _ in 0..node.raft.election_timeout() {
            node.raft.election_elapsed += 1;
        }
        assert_eq!(
            screen(&node.raft, &mut newer(), Sender::default()),
            Verdict::Step
        );
    }

    #[test]
    fn a_leader_refuses_acknowledgements_of_entries_it_never_had() {
        let mut node = follower();
        // Node 1 wins term 3.
        node.raft.election_elapsed = node.raft.election_timeout() * 2;
        node.campaign().unwrap();
        for from in [LEADER, OTHER] {
            let term = node.raft.term;
            let kind = if node.raft.state == StateRole::PreCandidate {
                MessageType::MsgRequestPreVoteResponse
            } else {
                MessageType::MsgRequestVoteResponse
            };
            node.step(msg(kind, from, term, |_| {})).unwrap();
        }
        if node.raft.state != StateRole::Leader {
            let term = node.raft.term;
            for from in [LEADER, OTHER] {
                let vote = msg(MessageType::MsgRequestVoteResponse, from, term, |_| {});
                node.step(vote).unwrap();
            }
        }
        assert_eq!(node.raft.state, StateRole::Leader);
        let term = node.raft.term;
        let last = node.raft.raft_log.last_index();
        let ack = |index| {
            msg(MessageType::MsgAppendResponse, OTHER, term, |m| {
                m.index = index
            })
        };
        refused(&node, ack(last + 1), "beyond the leader's last");
        assert_eq!(
            screen(&node.raft, &mut ack(last), Sender::default()),
            Verdict::Step
        );
        // A newer term from a peer while leading (not handing over) is doubted.
        let mut newer = msg(MessageType::MsgHeartbeatResponse, OTHER, term + 1, |_| {});
        assert!(matches!(
            screen(&node.raft, &mut newer, Sender::default()),
            Verdict::Ignore(_)
        ));
        // ...unless that voter has said nothing in this term for an election timeout: a
        // voter stranded in a newer term comes back only through the leader stepping down.
        let silent = Sender {
            silent: true,
            ..Sender::default()
        };
        assert_eq!(screen(&node.raft, &mut newer, silent), Verdict::Step);
        let mut beat = msg(MessageType::MsgHeartbeat, OTHER, term + 1, |_| {});
        assert!(matches!(
            screen(&node.raft, &mut beat, silent),
            Verdict::Ignore(_)
        ));
        let mut forced = msg(MessageType::MsgRequestVote, OTHER, term + 1, |m| {
            m.index = last;
            m.log_term = term;
            m.context = raft::CAMPAIGN_TRANSFER.to_vec();
        });
        assert!(matches!(
            screen(&node.raft, &mut forced, Sender::default()),
            Verdict::Ignore(_)
        ));
        // Handing over to 3, its forced vote is expected.
        node.raft.lead_transferee = Some(OTHER);
        assert_eq!(
            screen(&node.raft, &mut forced, Sender::default()),
            Verdict::Step
        );
    }

    #[test]
    fn numbers_stay_exact_in_javascript() {
        let node = follower();
        refused(
            &node,
            msg(MessageType::MsgHeartbeat, LEADER, 1 << 53, |_| {}),
            "beyond 2^53",
        );
        let huge_index = msg(MessageType::MsgAppend, LEADER, 2, |m| m.index = u64::MAX);
        refused(&node, huge_index, "beyond 2^53");
        let far = msg(
            MessageType::MsgHeartbeat,
            LEADER,
            2 + MAX_TERM_JUMP + 1,
            |_| {},
        );
        refused(&node, far.clone(), "beyond this node's");
        // A voter that proved who it is may be that far ahead (the others take its term),
        // but never beyond 2^53.
        let proven = Sender {
            authenticated: true,
            ..Sender::default()
        };
        assert!(!matches!(
            screen(&node.raft, &mut far.clone(), proven),
            Verdict::Refuse(_)
        ));
        let mut beyond = msg(MessageType::MsgHeartbeat, LEADER, 1 << 53, |_| {});
        assert!(matches!(
            screen(&node.raft, &mut beyond, proven),
            Verdict::Refuse(_)
        ));
    }
}
