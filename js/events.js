'use strict';
// The native event batches, fanned out as the typed events of the API: leadership, roles,
// the lease, applied entries (`apply`, `change`, watchers), snapshots, member health, and
// the engine stopping itself. Events arrive in log order, one batch per Ready.

const { RaftError, callbackError, fromNative } = require('./errors.js');
const { settled } = require('./core.js');

/**
 * Delivers one batch of native events.
 * @param {import('./core.js').NodeCore} core
 * @param {import('./binding').NativeEvent[]} events
 * @param {{ members(): unknown[], shutdown(): void }} node what the events need of the node
 */
function onEvents(core, events, node) {
  for (const e of events) {
    switch (e.kind) {
      case 'leader':
        core.deliver('leaderChange', {
          leaderId: e.leaderId ?? null,
          previousLeaderId: e.previousLeaderId ?? null,
          term: e.term,
          isLeader: e.leaderId === core.id,
        });
        break;
      case 'role':
        core.deliver('roleChange', { role: e.role, previousRole: e.previousRole, term: e.term });
        break;
      case 'lease':
        core.notifyLease();
        break;
      case 'applied':
        onApplied(core, e.entries);
        break;
      case 'snapshot':
        // Restored on start or installed from the leader: the app's state machine first.
        if (e.restore !== undefined && e.restore !== null) restoreApp(core, e.restore);
        core.deliver('snapshot', { index: e.index, term: e.term, bytes: e.bytes });
        break;
      case 'membership':
        core.deliver('membershipChange', { members: node.members(), index: e.index });
        break;
      case 'peerHealth':
        core.deliver('peerHealth', { id: e.peer, health: e.health, previousHealth: e.previousHealth });
        break;
      case 'snapshotRequest':
        saveApp(core, e.index);
        break;
      case 'session':
        if (e.lost) core.coordination.sessionLost(e.id);
        break;
      case 'lock':
        core.coordination.granted(e.name, e.session, e.fence);
        break;
      case 'failed':
        // The engine stopped itself: report why, then finish the stop (port, timers, jobs).
        core.node.reportError(new RaftError(e.code, e.message));
        node.shutdown();
        break;
    }
  }
}

/** The app's state machine is exactly at `index` here (events arrive in log order). */
function saveApp(core, index) {
  const hooks = core.config.snapshotHooks;
  try {
    const data = hooks.save();
    if (!(data instanceof Uint8Array)) throw new TypeError('snapshotHooks.save() must return a Buffer or Uint8Array');
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    // Whatever the node's state: the engine asked, and answers a node stopping itself.
    core.native
      ?.provideSnapshot(index, buf)
      .then(settled)
      .catch((err) => core.node.reportError(fromNative(err)));
  } catch (err) {
    core.node.reportError(callbackError(err, 'snapshotHooks.save()'));
  }
}

function restoreApp(core, data) {
  try {
    core.config.snapshotHooks.restore(data);
  } catch (err) {
    core.node.reportError(callbackError(err, 'snapshotHooks.restore()'));
  }
}

/**
 * @param {import('./core.js').NodeCore} core
 * @param {import('./binding').NativeApplied[]} entries
 */
function onApplied(core, entries) {
  const node = core.node;
  const wantApply = node.listenerCount('apply') > 0;
  const wantChange = node.listenerCount('change') > 0 || core.watchers.size > 0;
  if (!wantApply && !wantChange) return;
  for (const entry of entries) {
    const where = (what) => `entry ${entry.index}${what}`;
    const changes = wantChange
      ? entry.changes.map((c) => ({
          index: entry.index,
          key: c.key,
          op: c.value === undefined || c.value === null ? 'delete' : 'set',
          value: core.decodeForEvent(c.value, where(`, key ${JSON.stringify(c.key)}`)),
          prev: core.decodeForEvent(c.prev, where(`, key ${JSON.stringify(c.key)} (previous value)`)),
        }))
      : [];
    if (wantApply) core.deliver('apply', applyEvent(entry, (b, what) => core.decodeForEvent(b, where(what))));
    for (const change of changes) {
      core.deliver('change', change);
      for (const w of core.watchers) w.push(change);
    }
  }
}

/**
 * The `apply` event of one entry; `decodeValue(bytes, where)` decodes its values.
 * @param {import('./binding').NativeApplied} entry
 * @param {(bytes: Buffer | undefined | null, where: string) => unknown} decodeValue
 */
function applyEvent(entry, decodeValue) {
  /** @type {Record<string, unknown>} */
  const e = { index: entry.index, term: entry.term, op: entry.op };
  const first = entry.changes[0];
  switch (entry.op) {
    case 'set':
    case 'delete':
    case 'incr':
      e.key = first ? first.key : undefined;
      if (entry.op !== 'delete') e.value = decodeValue(first && first.value, '');
      e.prev = decodeValue(first && first.prev, ' (previous value)');
      if (entry.op === 'incr') e.ok = entry.ok;
      break;
    case 'cas':
      e.key = first ? first.key : undefined;
      e.ok = entry.ok;
      if (first) {
        e.value = decodeValue(first.value, '');
        e.prev = decodeValue(first.prev, ' (previous value)');
      }
      break;
    case 'batch':
    case 'txn':
      e.ops = entry.changes.map((c) =>
        c.value === undefined || c.value === null ? { op: 'delete', key: c.key } : { op: 'set', key: c.key, value: decodeValue(c.value, ` key ${JSON.stringify(c.key)}`) },
      );
      break;
    case 'raw':
      e.data = entry.data;
      break;
  }
  return e;
}

module.exports = { onEvents };
