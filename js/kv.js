'use strict';
// The key-value methods of RaftNode: writes (set, delete, cas, batch, update, incr, propose),
// reads (get, getLocal, entries) and watch. Each checks its arguments, encodes values and
// calls the engine; the engine replicates, orders and answers.

const { RaftError, abortError } = require('./errors.js');
const { encode, decode } = require('./codec.js');
const check = require('./options.js');
const { WatchQueue } = require('./watch.js');
const { sessionIdOf } = require('./coordination.js');

/** @typedef {import('./core.js').NodeCore} NodeCore */

/**
 * `{ index, term }`, and `duplicate: true` for a retry of a keyed write that applied before.
 * @returns {{ index: number, term: number, duplicate?: true }}
 */
function writeResult(r) {
  return r.duplicate ? { index: r.index, term: r.term, duplicate: true } : { index: r.index, term: r.term };
}

function writeOpts(opts) {
  const o = check.opts(opts);
  return {
    timeoutMs: check.timeout(o.timeoutMs),
    forward: o.forward === undefined ? true : check.boolean('opts.forward', o.forward),
    signal: check.signal(o.signal),
    /** @type {unknown} an ephemeral write's session (set, cas) */
    session: o.session,
    once: check.idempotencyKey(o.idempotencyKey),
  };
}

/** The options of a write that does not cross in batches, in the engine's form. */
function nativeOpts(o) {
  return { timeoutMs: o.timeoutMs, forward: o.forward, idempotencyKey: o.once };
}

function readOpts(opts) {
  const o = check.opts(opts);
  const consistency = o.consistency ?? 'linearizable';
  if (!['linearizable', 'lease', 'local'].includes(consistency)) {
    throw new TypeError(`opts.consistency must be 'linearizable', 'lease' or 'local', got ${JSON.stringify(consistency)}`);
  }
  return { consistency, timeoutMs: check.timeout(o.timeoutMs), signal: check.signal(o.signal) };
}

/** @param {NodeCore} core */
async function set(core, key, value, opts) {
  check.key(key);
  if (value === undefined) throw new TypeError('value must be MessagePack-encodable, got undefined (use delete)');
  const bytes = encode(value);
  const o = writeOpts(opts);
  if (o.session !== undefined) {
    // An ephemeral key: deleted in the entry that ends the session.
    const session = sessionIdOf(core, o.session, 'opts.session');
    return writeResult(await core.call((n) => n.setEphemeral(key, bytes, session, nativeOpts(o)), o.signal));
  }
  return writeResult(await core.batched({ kind: 'set', key, value: bytes, timeoutMs: o.timeoutMs, forward: o.forward, once: o.once }, o.signal));
}

/** @param {NodeCore} core */
async function del(core, key, opts) {
  check.key(key);
  const o = writeOpts(opts);
  const r = await core.batched({ kind: 'delete', key, timeoutMs: o.timeoutMs, forward: o.forward, once: o.once }, o.signal);
  return { ...writeResult(r), existed: r.ok };
}

/**
 * `expected === undefined`: the key must be absent. `next === undefined`: delete it.
 * @param {NodeCore} core
 */
async function cas(core, key, expected, next, opts) {
  check.key(key);
  const exp = expected === undefined ? null : encode(expected, 'expected');
  const nxt = next === undefined ? null : encode(next, 'next');
  const o = writeOpts(opts);
  const r =
    o.session === undefined
      ? await core.batched({ kind: 'cas', key, expected: exp, next: nxt, timeoutMs: o.timeoutMs, forward: o.forward, once: o.once }, o.signal)
      : await core.call((n) => n.casEphemeral(key, exp, nxt, sessionIdOf(core, o.session, 'opts.session'), nativeOpts(o)), o.signal);
  return { ...writeResult(r), ok: r.ok, current: decode(r.value) };
}

/** @param {NodeCore} core */
async function batch(core, ops, opts) {
  if (!Array.isArray(ops)) throw new TypeError(`ops must be an array, got ${check.typeName(ops)}`);
  const native = ops.map((op, i) => {
    if (op === null || typeof op !== 'object') throw new TypeError(`ops[${i}] must be an object`);
    check.key(op.key, `ops[${i}].key`);
    if (op.op === 'set') {
      if (op.value === undefined) throw new TypeError(`ops[${i}].value must be MessagePack-encodable, got undefined`);
      const session = op.session === undefined ? undefined : sessionIdOf(core, op.session, `ops[${i}].session`);
      return { op: 'set', key: op.key, value: encode(op.value, `ops[${i}].value`), session };
    }
    if (op.op === 'delete') return { op: 'delete', key: op.key };
    throw new TypeError(`ops[${i}].op must be 'set' or 'delete', got ${JSON.stringify(op.op)}`);
  });
  const o = writeOpts(opts);
  return writeResult(await core.call((n) => n.batch(native, nativeOpts(o)), o.signal));
}

/**
 * Read-modify-write through cas. A conflict (another write got in between) is retried with
 * jittered backoff until the deadline, so contention alone never fails it early; `fn` runs
 * locally, never replicated, and may run several times.
 * @param {NodeCore} core
 */
async function update(core, key, fn, opts) {
  check.key(key);
  if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${check.typeName(fn)}`);
  const o = writeOpts(opts);
  if (o.once !== undefined) {
    throw new TypeError('opts.idempotencyKey does not fit update(): fn runs again on every conflict; retry a cas or txn with a key instead');
  }
  const deadline = Date.now() + o.timeoutMs;
  const remaining = () => Math.max(1, deadline - Date.now());
  // The loop compares the stored bytes themselves: `fn` gets them decoded, never re-encoded.
  let current = (await core.batched({ kind: 'get', key, consistency: 'linearizable', timeoutMs: o.timeoutMs }, o.signal)) ?? null;
  for (let attempt = 0; ; attempt++) {
    const next = await fn(decode(current));
    const nextBytes = next === undefined ? null : encode(next, 'fn()');
    const r = await core.batched({ kind: 'cas', key, expected: current, next: nextBytes, timeoutMs: remaining(), forward: o.forward }, o.signal);
    if (r.ok) return writeResult(r);
    current = r.value ?? null;
    // Full jitter over a window that doubles per conflict (1 ms up to 100 ms): contenders
    // spread out instead of colliding again in the next entry.
    const pause = Math.random() * Math.min(100, 2 ** attempt);
    if (Date.now() + pause >= deadline) {
      throw new RaftError('ERR_CONFLICT', `update(${JSON.stringify(key)}): still conflicting after ${attempt + 1} attempts in ${o.timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
    if (o.signal && o.signal.aborted) throw abortError(o.signal);
  }
}

/**
 * Atomic numeric add in one entry (absent key = 0); resolves with the new value.
 * @param {NodeCore} core
 */
async function incr(core, key, by = 1, opts) {
  check.key(key);
  if (typeof by !== 'number') throw new TypeError(`by must be a number, got ${check.typeName(by)}`);
  if (!Number.isFinite(by)) throw new RangeError(`by must be a finite number, got ${by}`);
  const o = writeOpts(opts);
  const r = await core.batched({ kind: 'incr', key, by, timeoutMs: o.timeoutMs, forward: o.forward, once: o.once }, o.signal);
  if (!r.ok) {
    throw new RaftError('ERR_INVALID', `incr(${JSON.stringify(key)}): the value there is not a number (entry ${r.index} changed nothing)`);
  }
  return { ...writeResult(r), value: decode(r.value) };
}

/** @param {NodeCore} core */
async function propose(core, data, opts) {
  if (!(data instanceof Uint8Array)) throw new TypeError(`data must be a Buffer or Uint8Array, got ${check.typeName(data)}`);
  const o = writeOpts(opts);
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return writeResult(await core.batched({ kind: 'propose', key: '', value: buf, timeoutMs: o.timeoutMs, forward: o.forward, once: o.once }, o.signal));
}

/** @param {NodeCore} core */
async function get(core, key, opts) {
  check.key(key);
  const o = readOpts(opts);
  return decode(await core.batched({ kind: 'get', key, consistency: o.consistency, timeoutMs: o.timeoutMs }, o.signal));
}

/** @param {NodeCore} core */
function getLocal(core, key) {
  check.key(key);
  if (core.state !== 'running') throw new RaftError('ERR_STOPPED', `node ${core.id} is not running`);
  return decode(core.callSync((n) => n.getLocal(key)));
}

/**
 * A key's entry as the engine gave it (none: undefined), its value decoded.
 * @param {import('./binding').NativeKeyRecord | null | undefined} r
 */
function entryOf(r) {
  if (r === null || r === undefined) return undefined;
  /** @type {{ value: any, createIndex: number, modIndex: number, version: number, session?: string }} */
  const entry = { value: decode(r.value), createIndex: r.createIndex, modIndex: r.modIndex, version: r.version };
  if (r.session !== null && r.session !== undefined) entry.session = String(r.session);
  return entry;
}

/** @param {NodeCore} core */
async function getEntry(core, key, opts) {
  check.key(key);
  const o = readOpts(opts);
  return entryOf(await core.call((n) => n.getEntry(key, o.consistency, o.timeoutMs), o.signal));
}

/**
 * Pairs under `opts.prefix` in key order: at most `opts.limit` of them, after the key
 * `opts.after` when given (the last key of the previous page).
 * @param {NodeCore} core
 * @returns {Promise<Array<[string, unknown]>>}
 */
async function entries(core, opts) {
  const o = readOpts(opts);
  const given = check.opts(opts);
  const prefix = check.prefix(given.prefix);
  const after = given.after === undefined ? undefined : check.prefix(given.after, 'opts.after');
  const limit = given.limit === undefined ? undefined : check.integer('opts.limit', given.limit, 1, 2 ** 32 - 1);
  const pairs = await core.call((n) => n.entries(prefix, o.consistency, o.timeoutMs, after, limit), o.signal);
  return pairs.map((p) => [p.key, decode(p.value)]);
}

/**
 * Changes under `opts.prefix` in log order: from now on, or every change after
 * `opts.fromIndex` first (a resync when this node no longer keeps them), then live ones.
 * @param {NodeCore} core
 */
function watch(core, opts) {
  const o = check.opts(opts);
  const prefix = check.prefix(o.prefix);
  const signal = check.signal(o.signal);
  const maxBuffered = o.maxBuffered === undefined ? undefined : check.integer('opts.maxBuffered', o.maxBuffered, 1, 2 ** 31 - 1);
  const fromIndex = o.fromIndex === undefined ? undefined : check.integer('opts.fromIndex', o.fromIndex, 0, Number.MAX_SAFE_INTEGER);
  const queue = new WatchQueue(
    prefix,
    signal,
    () => {
      core.watchers.delete(queue);
      core.syncWantApplied();
    },
    maxBuffered,
  );
  if (core.state === 'stopped') {
    queue.close();
    return queue;
  }
  core.watchers.add(queue);
  core.syncWantApplied();
  // From the first watch on, the node keeps what it applies: this one may resume later.
  core.callSync((n) => n.keepHistory());
  // In the same turn as live changes are switched on (none is delivered before this turn
  // ends): the replay ends at `through`, and live changes are taken after it.
  if (fromIndex !== undefined) replayInto(core, queue, prefix, fromIndex);
  return queue;
}

/** What the engine replays of `prefix` after `fromIndex`, decoded, into `queue`. */
function replayInto(core, queue, prefix, fromIndex) {
  const since = core.callSync((n) => n.changesSince(prefix, fromIndex));
  const where = (index, key) => `entry ${index}, key ${JSON.stringify(key)}`;
  const items = since.resync
    ? [{ op: 'resync', index: since.through, entries: since.entries.map((e) => [e.key, core.decodeForEvent(e.value, where(since.through, e.key))]) }]
    : since.changes.map(({ index, change: c }) => ({
        index,
        key: c.key,
        op: c.value === undefined || c.value === null ? 'delete' : 'set',
        value: core.decodeForEvent(c.value, where(index, c.key)),
        prev: core.decodeForEvent(c.prev, `${where(index, c.key)} (previous value)`),
      }));
  queue.replay(items, Math.max(since.through, fromIndex));
}

module.exports = { set, delete: del, cas, batch, update, incr, propose, get, getLocal, getEntry, entries, entryOf, watch, writeOpts, nativeOpts };
