//! Snapshots: taking one every `snapshot_every` entries (off the driver's thread), adopting
//! it and compacting the log behind it, and installing the leader's.

use super::*;

/// Snapshot points: when the next is due, the one being taken, the newest stored.
pub(super) struct Snapshots {
    /// Applied entries between snapshots.
    pub(super) every: u64,
    /// The snapshot point last taken or requested (the next is due `every` later).
    pub(super) last: u64,
    /// Index of the newest snapshot stored, installed or restored.
    pub(super) index: u64,
    /// The application adds its own bytes to each snapshot.
    pub(super) app: bool,
    /// With app snapshots: the state captured at a snapshot point, waiting for the
    /// application's bytes.
    pub(super) pending: Option<SnapshotPoint>,
    /// A snapshot of this node's state to encode and write, waiting for the driver.
    pub(super) job: Option<SnapshotJob>,
    /// The driver runs a snapshot job (one at a time).
    pub(super) running: bool,
    /// Take a snapshot at the next opportunity, whatever `every` says.
    pub(super) forced: bool,
}

impl Snapshots {
    pub(super) fn new(config: &Config, index: u64) -> Self {
        Snapshots {
            every: config.snapshot_every,
            last: index,
            index,
            app: config.app_snapshots,
            pending: None,
            job: None,
            running: false,
            forced: false,
        }
    }
}

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
        self.directory.learn(members);
        self.directory.conf_epoch = conf_epoch;
        let meta = snapshot.get_metadata();
        {
            // Under the state's lock: a watch never sees the new state with the old history.
            let mut kv = self.kv.write().recover();
            *kv = restored;
            self.history.lock().recover().reset(meta.index);
        }
        self.snapshots.last = meta.index;
        self.snapshots.index = meta.index;
        // The writes in flight from here may be in the snapshot: none of their entries will
        // be applied here to answer them. Say so now rather than at their deadlines.
        self.writes.caught_up_by_snapshot(meta.index);
        // A snapshot point captured before the install is obsolete.
        self.snapshots.pending = None;
        self.refresh_members();
        flush_applied(applied, events);
        self.sessions_replaced(events);
        events.push(Event::Snapshot {
            index: meta.index,
            term: meta.term,
            bytes: snapshot.data.len() as u64,
            restore: self.snapshots.app.then(|| app.unwrap_or_default()),
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
        let due = index >= self.snapshots.last + self.snapshots.every;
        let busy = self.snapshots.running || self.snapshots.job.is_some();
        if !self.snapshots.forced && (!due || busy) {
            return Ok(());
        }
        let forced = std::mem::take(&mut self.snapshots.forced);
        let point = self.applied_point();
        self.snapshots.last = index;
        flush_applied(applied, events);
        if self.snapshots.app {
            // The application's state machine is at `index` right after this batch's
            // applied entries: ask it for its bytes there. A request still unanswered (its
            // hook threw, or it never answered) gives way to this one: the application is
            // asked again at every snapshot point until it answers (a late answer to the old
            // one is then ignored as stale).
            if let Some(unanswered) = &self.snapshots.pending {
                tracing::warn!(
                    unanswered = unanswered.index,
                    index,
                    "the application gave no snapshot for index {}; asking again at {index}",
                    unanswered.index
                );
            }
            self.snapshots.pending = Some(point);
            events.push(Event::SnapshotRequest { index });
            return Ok(());
        }
        let job = SnapshotJob::new(point, None, self.raw.store().snapshot_sink());
        if forced {
            let snapshot = job.run()?;
            self.adopt_snapshot(snapshot, events)?;
        } else {
            self.snapshots.job = Some(job);
        }
        Ok(())
    }

    /// The state at the applied index, for a backup (`operations::backup`). A node whose
    /// application keeps a state machine of its own is refused: its backup would lack that.
    pub fn capture(&self) -> Result<SnapshotPoint> {
        if self.snapshots.app {
            return Err(Error::Invalid(
                "backup covers the built-in key-value state, and this node's application keeps \
                 a state machine of its own (snapshot hooks): back that up with the application"
                    .into(),
            ));
        }
        Ok(self.applied_point())
    }

    /// A copy of the state machine at the applied index, with what a snapshot of it carries
    /// (a snapshot's point and a backup's alike).
    fn applied_point(&self) -> SnapshotPoint {
        let index = self.raw.raft.raft_log.applied;
        SnapshotPoint {
            index,
            term: self.raw.raft.raft_log.term(index).unwrap_or(0),
            conf_state: self.raw.raft.prs().conf().to_conf_state(),
            kv: self.kv.read().recover().clone(),
            members: self.directory.urls_of_members(),
            conf_epoch: self.directory.conf_epoch,
        }
    }

    /// The application's bytes for the snapshot point `index`.
    pub fn provide_app_snapshot(&mut self, index: u64, app: Vec<u8>) {
        match self.snapshots.pending.take() {
            Some(point) if point.index == index => {
                let sink = self.raw.store().snapshot_sink();
                self.snapshots.job = Some(SnapshotJob::new(point, Some(app), sink));
            }
            other => self.snapshots.pending = other, // stale or unknown: ignore
        }
    }

    /// The snapshot job to run now, if one waits and none is running: the driver runs it
    /// off its thread and hands the result to [`Core::finish_snapshot`].
    pub fn take_snapshot_job(&mut self) -> Option<SnapshotJob> {
        if self.snapshots.running {
            return None;
        }
        let job = self.snapshots.job.take()?;
        self.snapshots.running = true;
        Some(job)
    }

    /// The outcome of the job last taken: the store adopts the snapshot and compacts the
    /// log. A failure to write it is a storage failure: the node must stop.
    pub fn finish_snapshot(&mut self, outcome: Result<Snapshot>) -> Result<Vec<Event>> {
        self.snapshots.running = false;
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
            self.snapshots.index = index;
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
        let keep = crate::config::SNAPSHOT_KEEP_ENTRIES.min(self.snapshots.every);
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return keep;
        }
        let now = self.time.clock.now();
        let window = self.time.election * ACTIVE_ELECTIONS;
        let slowest = raft
            .prs()
            .iter()
            .filter(|&(&id, _)| id != self.id && !self.health.silent_for(id, window, now))
            .map(|(_, progress)| progress.matched)
            .min();
        match slowest {
            // The follower's next append needs the term of its last entry: keep that too.
            Some(matched) if matched < index => {
                (index - matched).clamp(keep, keep.max(2 * self.snapshots.every))
            }
            _ => keep,
        }
    }
}
