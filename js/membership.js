'use strict';
// The membership methods of RaftNode: the members table and membership changes (one at a
// time, through the leader; each resolves once its entry is applied here).

const check = require('./options.js');

/** @typedef {import('./core.js').NodeCore} NodeCore */

/**
 * Members as this node sees them; from the configuration when the node is not running.
 * @param {NodeCore} core
 */
function members(core) {
  const peers = core.config.native.peers;
  const url = (id) => (id === core.id ? core.url : peers[id] || null);
  if (core.state === 'running') {
    return core.callSync((n) => n.members()).map((m) => ({
      id: m.id,
      url: m.url ?? url(m.id),
      voter: m.voter,
      health: m.health,
      matchIndex: m.matchIndex ?? null,
      lastContactMs: m.lastContactMs === undefined || m.lastContactMs === null ? null : Math.round(m.lastContactMs),
      httpUrl: m.httpUrl ?? null,
    }));
  }
  const s = core.status();
  const httpUrl = (id) => (id === core.id ? core.config.httpUrl : null);
  const member = (id, voter) => ({ id, url: url(id), voter, health: 'unknown', matchIndex: null, lastContactMs: null, httpUrl: httpUrl(id) });
  return [...s.voters.map((id) => member(id, true)), ...s.learners.map((id) => member(id, false))];
}

/**
 * Adds a member started with `join: true`, listening at `url`; resolves once applied here.
 * @param {NodeCore} core
 */
async function addMember(core, id, url, opts) {
  check.memberName('id', id);
  if (typeof url !== 'string' || !/^wss?:\/\/\S+$/.test(url)) {
    throw new TypeError(`url must be a ws:// or wss:// URL, got ${JSON.stringify(url)}`);
  }
  const o = check.opts(opts);
  const learner = o.learner === undefined ? false : check.boolean('opts.learner', o.learner);
  const timeoutMs = check.timeout(o.timeoutMs, 'opts.timeoutMs', 10_000);
  await core.call((n) => n.addMember(id, url, learner, timeoutMs));
}

/**
 * Makes a learner a voter.
 * @param {NodeCore} core
 */
async function promoteMember(core, id, opts) {
  check.memberName('id', id);
  const timeoutMs = check.timeout(check.opts(opts).timeoutMs, 'opts.timeoutMs', 10_000);
  await core.call((n) => n.promoteMember(id, timeoutMs));
}

/**
 * Removes a member. A leader removing itself hands leadership over first (the engine does).
 * @param {NodeCore} core
 */
async function removeMember(core, id, opts) {
  check.memberName('id', id);
  const timeoutMs = check.timeout(check.opts(opts).timeoutMs, 'opts.timeoutMs', 10_000);
  await core.call((n) => n.removeMember(id, timeoutMs));
}

module.exports = { members, addMember, promoteMember, removeMember };
