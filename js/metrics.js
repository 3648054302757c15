'use strict';
// A node's figures for monitoring: as a plain object (metricsJson, for OpenTelemetry gauges and
// counters or any JSON consumer) and as Prometheus text (metrics, for a /metrics endpoint).

const HEALTH_VALUE = { healthy: 1, degraded: 0.5, unhealthy: 0 };

/**
 * @param {{ status: object, members: object[], counters: object | null }} from
 *   `counters` is the engine's (null before start: everything counts zero).
 */
function metricsJson({ status, members, counters }) {
  const c = counters ?? {
    proposals: 0, proposalsFailed: 0, elections: 0, leaderChanges: 0, bytesSent: 0, bytesReceived: 0,
    proposalsOverloaded: 0, framesRefused: 0, logSyncs: 0, sessions: 0, locksHeld: 0, lockWaiters: 0, sessionsExpired: 0,
    proposalBucketBounds: [], proposalBuckets: [0], proposalSecondsSum: 0,
  };
  const buckets = c.proposalBucketBounds.map((le, i) => ({ le, count: c.proposalBuckets[i] }));
  return {
    node: status.id,
    role: status.role,
    term: status.term,
    isLeader: status.role === 'leader',
    leaderId: status.leaderId,
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
    lastIndex: status.lastIndex,
    snapshotIndex: status.snapshotIndex,
    leaderChanges: c.leaderChanges,
    elections: c.elections,
    proposals: c.proposals,
    proposalsFailed: c.proposalsFailed,
    proposalsOverloaded: c.proposalsOverloaded,
    proposalDuration: {
      buckets,
      count: c.proposalBuckets[c.proposalBuckets.length - 1],
      sumSeconds: c.proposalSecondsSum,
    },
    bytesSent: c.bytesSent,
    bytesReceived: c.bytesReceived,
    framesRefused: c.framesRefused,
    logSyncs: c.logSyncs,
    sessions: c.sessions,
    locksHeld: c.locksHeld,
    lockWaiters: c.lockWaiters,
    sessionsExpired: c.sessionsExpired,
    // Health is known on the leader only: elsewhere every peer is 'unknown'.
    peers: members.filter((m) => m.id !== status.id).map((m) => ({
      id: m.id,
      health: m.health,
      matchIndex: m.matchIndex,
      lastContactMs: m.lastContactMs,
    })),
  };
}

function label(value) {
  return String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function number(v) {
  if (v === Infinity) return '+Inf';
  return Number.isFinite(v) ? String(v) : 'NaN';
}

/** Prometheus text exposition (format 0.0.4) of `metricsJson`'s figures. */
function prometheusText(m) {
  const node = `node="${label(m.node)}"`;
  const out = [];
  const metric = (name, type, help, samples) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [suffix, labels, value] of samples) out.push(`${name}${suffix}{${labels}} ${number(value)}`);
  };
  const one = (name, type, help, value) => metric(name, type, help, [['', node, value]]);
  one('raftline_term', 'gauge', 'The Raft term this node is in.', m.term);
  one('raftline_is_leader', 'gauge', '1 while this node is the leader, else 0.', m.isLeader ? 1 : 0);
  one('raftline_leader_changes_total', 'counter', 'Changes of the leader this node follows (including to none).', m.leaderChanges);
  one('raftline_elections_total', 'counter', 'Elections this node started as a candidate.', m.elections);
  one('raftline_proposals_total', 'counter', 'Writes proposed through this node.', m.proposals);
  one('raftline_proposals_failed_total', 'counter', 'Writes through this node that did not commit (or whose outcome is unknown).', m.proposalsFailed);
  one('raftline_commit_index', 'gauge', 'The highest log index this node knows committed.', m.commitIndex);
  one('raftline_applied_index', 'gauge', 'The highest log index this node has applied.', m.appliedIndex);
  one('raftline_last_index', 'gauge', 'The last index of this node\'s log.', m.lastIndex);
  one('raftline_snapshot_index', 'gauge', 'The index of this node\'s latest snapshot.', m.snapshotIndex);
  const d = m.proposalDuration;
  metric('raftline_proposal_duration_seconds', 'histogram', 'Time from proposing a write through this node to its outcome.', [
    ...d.buckets.map((b) => ['_bucket', `${node},le="${number(b.le)}"`, b.count]),
    ['_bucket', `${node},le="+Inf"`, d.count],
    ['_sum', node, d.sumSeconds],
    ['_count', node, d.count],
  ]);
  metric('raftline_peer_health', 'gauge', 'Each peer as the leader sees it: 1 healthy, 0.5 degraded, 0 unhealthy (leader only).',
    m.peers.filter((p) => p.health in HEALTH_VALUE).map((p) => ['', `${node},peer="${label(p.id)}"`, HEALTH_VALUE[p.health]]));
  one('raftline_bytes_sent_total', 'counter', 'Bytes this node sent to its peers.', m.bytesSent);
  one('raftline_bytes_received_total', 'counter', 'Bytes this node received from its peers.', m.bytesReceived);
  one('raftline_proposals_overloaded_total', 'counter', 'Writes through this node refused at once for overload (ERR_OVERLOADED).', m.proposalsOverloaded);
  one('raftline_frames_refused_total', 'counter', 'Peer frames this node refused for their size, number of messages or failed authentication (each closed its connection).', m.framesRefused);
  one('raftline_log_syncs_total', 'counter', 'Fsyncs of this node\'s log (0 in memory); writes are grouped, many to an fsync, under load.', m.logSyncs);
  one('raftline_sessions', 'gauge', 'Sessions open in the cluster, as this node applied them.', m.sessions);
  one('raftline_locks_held', 'gauge', 'Locks held in the cluster, as this node applied them.', m.locksHeld);
  one('raftline_lock_waiters', 'gauge', 'Sessions waiting for a lock in the cluster, as this node applied them.', m.lockWaiters);
  one('raftline_session_expiries_total', 'counter', 'Sessions this node applied the expiry of (not renewed within their TTL) since it started.', m.sessionsExpired);
  return out.join('\n') + '\n';
}

module.exports = { metricsJson, prometheusText };
