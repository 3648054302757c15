//! Applying committed entries to the state machine, in log order, and answering this node's
//! requests among them.

use super::*;
use crate::state_machine::OpKind;

impl<S: LogStore> Core<S> {
    /// Applies committed entries to the state machine (under one write lock for the batch)
    /// and answers this node's proposals among them.
    pub(super) fn apply(&mut self, entries: Vec<Entry>, applied: &mut Vec<AppliedEntry>) {
        let Some(last_term) = entries.last().map(|e| e.term) else {
            return;
        };
        self.apply_entries(entries, applied);
        self.writes.superseded(last_term);
    }

    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>, applied: &mut Vec<AppliedEntry>) {
        let kv = Arc::clone(&self.kv);
        let mut kv = kv.write().recover();
        // Under the state's lock: a watch reads both at the same index.
        let history = Arc::clone(&self.history);
        let mut history = history.lock().recover();
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's no-op
                EntryType::EntryNormal => {
                    let Entry {
                        index,
                        term,
                        data,
                        context,
                        ..
                    } = entry;
                    let command = match Command::decode(&data) {
                        Ok(command) => command,
                        Err(e) => {
                            // Same bytes on every member: skipping is deterministic.
                            tracing::warn!(index, "skipping undecodable entry: {e}");
                            continue;
                        }
                    };
                    if let Command::Refused { code, reason } = command {
                        // A write or membership change the leader refused in place of its
                        // entry.
                        if let Some(seq) = self.ids.ours(&context) {
                            let error = Error::from_code(&code, reason);
                            if let Some(change) = self.changes.pending.remove(&seq) {
                                change.waiter.send(Err(error));
                            } else {
                                self.writes.refused(seq, error);
                            }
                        }
                        continue;
                    }
                    // Changes are listed for events when wanted, and for the history once a
                    // watch asked for it.
                    let record = self.outbox.applied_wanted.load(Ordering::Relaxed);
                    let listed = record || history.recording();
                    let ApplyResult {
                        op,
                        mut changes,
                        ok,
                        value,
                        data,
                        session,
                        lock,
                        no_session,
                        txn,
                        duplicate_of,
                    } = kv.apply_entry(index, term, command, listed);
                    if let Some((index, term)) = duplicate_of {
                        // A retry of a keyed write that applied before: it applied nothing
                        // (no event), and answers with the first one's result.
                        let outcome = WriteOutcome {
                            index,
                            term,
                            ok,
                            value,
                            txn,
                            duplicate: true,
                            ..WriteOutcome::default()
                        };
                        self.answer_proposal(&context, outcome);
                        continue;
                    }
                    if no_session {
                        // A write in a session that had ended: nothing was written.
                        if let Some(seq) = self.ids.ours(&context) {
                            let error = Error::SessionLost(
                                "the write's session does not exist (it ended)".into(),
                            );
                            self.writes.refused(seq, error);
                        }
                        continue;
                    }
                    if history.recording() && !changes.is_empty() {
                        let kept = if record {
                            changes.clone()
                        } else {
                            std::mem::take(&mut changes)
                        };
                        history.applied(index, kept);
                    }
                    if matches!(op, OpKind::Session | OpKind::Lock) {
                        // The library's own bookkeeping: no `apply` event, but for the
                        // deletion of an ended session's keys (a batch of deletes).
                        self.sessions_applied(index, &context, &session);
                        self.locks_applied(&lock);
                        if record && !changes.is_empty() {
                            applied.push(AppliedEntry {
                                index,
                                term,
                                op: OpKind::Batch,
                                changes,
                                ok,
                                data,
                            });
                        }
                    } else if record {
                        applied.push(AppliedEntry {
                            index,
                            term,
                            op,
                            changes,
                            ok,
                            data,
                        });
                    }
                    let outcome = WriteOutcome {
                        index,
                        term,
                        ok,
                        value,
                        lock: lock.reply,
                        txn,
                        duplicate: false,
                    };
                    self.answer_proposal(&context, outcome);
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry);
                }
            }
        }
        history.applied(last, Vec::new());
    }

    /// The switch for `Event::Applied`: when off, applied entries are not reported (their
    /// changes go to the history only, not copied), which saves work when nobody listens.
    pub fn applied_events(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.outbox.applied_wanted)
    }
}
