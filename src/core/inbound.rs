//! Messages from the wire: screened, then stepped; and what the transport reports of the
//! messages it could not deliver.

use super::*;

impl<S: LogStore> Core<S> {
    /// Steps a message received from the wire, once screened (see [`crate::core::screen`]): a
    /// refused message is not stepped, and the caller closes the connection that carried
    /// it with the reason.
    pub fn step(&mut self, mut msg: Message) -> std::result::Result<(), String> {
        let now = self.time.clock.now();
        let sender = Sender {
            silent: self.health.silent_for(msg.from, self.time.election, now),
            authenticated: self.peers_authenticated,
        };
        match screen(&self.raw.raft, &mut msg, sender) {
            Verdict::Step => {}
            Verdict::Ignore(doubt) => {
                tracing::debug!("message ignored: {doubt}");
                return Ok(());
            }
            Verdict::Refuse(reason) => return Err(reason),
        }
        if let Some(snapshot) = msg.snapshot.as_ref() {
            // Its bytes are this engine's, not the raft crate's: a snapshot that would not
            // restore must not get as far as replacing the log. (Snapshots are rare: the
            // second decoding, on restore, costs little.)
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                SnapshotData::decode(&snapshot.data)?;
            }
        }
        if self.raw.raft.state == StateRole::Leader && self.raw.raft.prs().get(msg.from).is_none() {
            // A removed member that missed its removal: closing with this reason tells it.
            return Err(crate::peer_messages::NOT_A_MEMBER.to_string());
        }
        // Only what a peer says in this term shows that it follows this leader: a member
        // stranded in a newer term must stay silent here (see `screen`'s stranded members).
        if msg.term == 0 || msg.term == self.raw.raft.term {
            self.health.heard(msg.from, now);
        }
        if msg.get_msg_type() == MessageType::MsgPropose && self.raw.raft.state == StateRole::Leader
        {
            self.screen_forwarded_proposals(&mut msg);
            if msg.entries.is_empty() {
                return Ok(()); // every change in it waits (the raft crate panics on none)
            }
        }
        match self.raw.step(msg) {
            Ok(()) => Ok(()),
            // Stale responses from removed peers and the like: harmless, not hostile.
            Err(e) => {
                tracing::trace!("message ignored: {e}");
                Ok(())
            }
        }
    }

    /// Tells the raft crate what became of messages sent to a peer: a leader probes a peer
    /// it could not reach, and sends a snapshot again once one was lost.
    pub fn report_delivery(&mut self, delivery: crate::peer_messages::Delivery) {
        use crate::peer_messages::Delivery;
        use raft::SnapshotStatus;
        match delivery {
            Delivery::Unreachable(peer) => self.raw.report_unreachable(peer),
            Delivery::Gone(peer) => self.leader_gone(peer),
            Delivery::NotAMember(peer) => {
                if self.directory.was_member() && peer == self.raw.raft.leader_id {
                    self.mark_removed();
                }
            }
            Delivery::Snapshot { to, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
        }
    }
}
