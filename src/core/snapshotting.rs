//! Snapshots: taking one every `snapshot_every` entries (off the driver's thread), adopting
//! it and compacting the log behind it, and installing the leader's.

use super::*;

impl<S: LogStore> Core<S> {
    /// Restores the state machine from a leader's snapshot and persists it.
    pub(super) fn install_snapshot(
        &mut self,
        snapshot: &raft::eraftpb::Snapshot,
        applied: &mut Vec<AppliedEntry>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let SnapshotData {
            kv: restored,
            app,
            members,
            conf_epoch,
        } = SnapshotData::decode(&snapshot.data).map_err(Error::Storage)?;
        self.raw.mut_store().persist(Some(snapshot), &[], None)?;
        self.learn_members(members);
        self.conf_epoch = conf_epoch;
        *self.kv.write().recover() = restored;
        let meta = snapshot.get_metadata();
        self.last_snapshot = meta.index;
        self.snapshot_index = meta.index;
        // The writes in flight from here may be in the snapshot: none of their entries will
        // be applied here to answer them. Say so now rather than at their deadlines.
        self.writes.caught_up_by_snapshot(meta.index);
        // A snapshot point captured before the install is obsolete.
        self.pending_snapshot = None;
        self.members = self.member_names();
        self.evaluate_health();
        self.track_membership();
        flush_applied(applied, events);
        events.push(Event::Snapshot {
            index: meta.index,
            term: meta.term,
            bytes: snapshot.data.len() as u64,
            restore: self.app_snapshots.then(|| app.unwrap_or_default()),
        });
        Ok(())
    }

    /// Every `snapshot_every` applied entries, captures the state machine for a snapshot:
    /// a [`SnapshotJob`] that the driver runs off its thread (then [`Core::finish_snapshot`]),
    /// or, with app snapshots, a request for the application's bytes first. A forced
    /// snapshot (a member was added behind the compacted log) is taken at once.
    pub(super) fn maybe_snapshot(
        &mut self,
        applied: &mut Vec<AppliedEntry>,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let index = self.raw.raft.raft_log.applied;
        let due = index >= self.last_snapshot + self.snapshot_every;
        let busy = self.snapshot_running || self.snapshot_job.is_some();
        if !self.force_snapshot && (!due || busy) {
            return Ok(());
        }
        let forced = std::mem::take(&mut self.force_snapshot);
        let point = SnapshotPoint {
            index,
            term: self.raw.raft.raft_log.term(index).unwrap_or(0),
            conf_state: self.raw.raft.prs().conf().to_conf_state(),
            kv: self.kv.read().recover().clone(),
            members: self.member_urls(),
            conf_epoch: self.conf_epoch,
        };
        self.last_snapshot = index;
        flush_applied(applied, events);
        if self.app_snapshots {
            // The application's state machine is at `index` right after this batch's
            // applied entries: ask it for its bytes there. A request still unanswered (its
            // hook threw, or it never answered) gives way to this one: the application is
            // asked again at every snapshot point until it answers (a late answer to the old
            // one is then ignored as stale).
            if let Some(unanswered) = &self.pending_snapshot {
                tracing::warn!(
                    unanswered = unanswered.index,
                    index,
                    "the application gave no snapshot for index {}; asking again at {index}",
                    unanswered.index
                );
            }
            self.pending_snapshot = Some(point);
            events.push(Event::SnapshotRequest { index });
            return Ok(());
        }
        let job = SnapshotJob::new(point, None, self.raw.store().snapshot_sink());
        if forced {
            let snapshot = job.run()?;
            self.adopt_snapshot(snapshot, events)?;
        } else {
            self.snapshot_job = Some(job);
        }
        Ok(())
    }

    /// The application's bytes for the snapshot point `index`.
    pub fn provide_app_snapshot(&mut self, index: u64, app: Vec<u8>) {
        match self.pending_snapshot.take() {
            Some(point) if point.index == index => {
                let sink = self.raw.store().snapshot_sink();
                self.snapshot_job = Some(SnapshotJob::new(point, Some(app), sink));
            }
            other => self.pending_snapshot = other, // stale or unknown: ignore
        }
    }

    /// The snapshot job to run now, if one waits and none is running: the driver runs it
    /// off its thread and hands the result to [`Core::finish_snapshot`].
    pub fn take_snapshot_job(&mut self) -> Option<SnapshotJob> {
        if self.snapshot_running {
            return None;
        }
        let job = self.snapshot_job.take()?;
        self.snapshot_running = true;
        Some(job)
    }

    /// The outcome of the job last taken: the store adopts the snapshot and compacts the
    /// log. A failure to write it is a storage failure: the node must stop.
    pub fn finish_snapshot(&mut self, outcome: Result<Snapshot>) -> Result<Vec<Event>> {
        self.snapshot_running = false;
        let mut events = Vec::new();
        self.adopt_snapshot(outcome?, &mut events)?;
        Ok(events)
    }

    pub(super) fn adopt_snapshot(
        &mut self,
        snapshot: Snapshot,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let keep = self.entries_to_keep(index);
        let bytes = snapshot.data.len() as u64;
        if self.raw.mut_store().adopt_snapshot(snapshot, keep)? {
            self.snapshot_index = index;
            events.push(Event::Snapshot {
                index,
                term,
                bytes,
                restore: None,
            });
        }
        Ok(())
    }

    /// How many entries before a snapshot at `index` the log keeps. A leader keeps what its
    /// slowest active follower (heard within [`ACTIVE_ELECTIONS`] election timeouts) still
    /// needs, up to twice `snapshot_every` entries: a follower that is replicating, only
    /// behind, catches up from the log. Compacting past it sent such a follower the whole
    /// state instead, and the writes it had forwarded were answered by no entry it applied
    /// (they reached it inside the snapshot).
    pub(super) fn entries_to_keep(&self, index: u64) -> u64 {
        let keep = crate::config::SNAPSHOT_KEEP_ENTRIES.min(self.snapshot_every);
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return keep;
        }
        let now = self.clock.now();
        let window = self.election * ACTIVE_ELECTIONS;
        let slowest = raft
            .prs()
            .iter()
            .filter(|&(&id, _)| id != self.id && !self.health.silent_for(id, window, now))
            .map(|(_, progress)| progress.matched)
            .min();
        match slowest {
            // The follower's next append needs the term of its last entry: keep that too.
            Some(matched) if matched < index => {
                (index - matched).clamp(keep, keep.max(2 * self.snapshot_every))
            }
            _ => keep,
        }
    }
}
