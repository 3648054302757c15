'use strict';
// RaftNode.txn(): comparisons on keys, then one list of operations or the other, applied in
// one log entry. This file checks the caller's transaction and encodes its values; the
// engine compares and applies (src/state_machine/txn.rs).

const { encode } = require('./codec.js');
const check = require('./options.js');
const { sessionIdOf } = require('./coordination.js');
const { entryOf, nativeOpts } = require('./kv.js');

/** Comparisons and operations together, at most (the engine's bound, checked here first). */
const MAX_TXN_OPS = 128;

const COMPARED = ['exists', 'value', 'modIndex', 'version'];

/** One comparison `{ key, <one of COMPARED> }` in the engine's form. */
function compare(c, name) {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new TypeError(`${name} must be an object, got ${check.typeName(c)}`);
  check.key(c.key, `${name}.key`);
  const given = COMPARED.filter((k) => c[k] !== undefined);
  if (given.length !== 1) {
    throw new TypeError(`${name} must compare exactly one of ${COMPARED.join(', ')}, got ${given.length ? given.join(' and ') : 'none'}`);
  }
  const kind = given[0];
  switch (kind) {
    case 'exists':
      return { key: c.key, kind, exists: check.boolean(`${name}.exists`, c.exists) };
    case 'value':
      return { key: c.key, kind, value: encode(c.value, `${name}.value`) };
    default:
      return { key: c.key, kind, number: check.integer(`${name}.${kind}`, c[kind], 0, Number.MAX_SAFE_INTEGER) };
  }
}

/** One operation `{ op: 'set' | 'delete' | 'get', key, value?, session? }` in the engine's form. */
function operation(core, op, name) {
  if (op === null || typeof op !== 'object' || Array.isArray(op)) throw new TypeError(`${name} must be an object, got ${check.typeName(op)}`);
  check.key(op.key, `${name}.key`);
  switch (op.op) {
    case 'set': {
      if (op.value === undefined) throw new TypeError(`${name}.value must be MessagePack-encodable, got undefined`);
      const session = op.session === undefined ? undefined : Number(sessionIdOf(core, op.session, `${name}.session`));
      return { op: 'set', key: op.key, value: encode(op.value, `${name}.value`), session };
    }
    case 'delete':
    case 'get':
      return { op: op.op, key: op.key };
    default:
      throw new TypeError(`${name}.op must be 'set', 'delete' or 'get', got ${JSON.stringify(op.op)}`);
  }
}

function list(v, name) {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new TypeError(`${name} must be an array, got ${check.typeName(v)}`);
  return v;
}

/**
 * @param {import('./core.js').NodeCore} core
 * @param {{ if?: object[], then?: object[], else?: object[] }} t
 * @param {unknown} opts write options
 * @param {(opts: unknown) => { timeoutMs: number, forward: boolean, signal?: AbortSignal, once?: string }} writeOpts
 */
async function txn(core, t, opts, writeOpts) {
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw new TypeError(`t must be an object, got ${check.typeName(t)}`);
  const unknown = Object.keys(t).filter((k) => !['if', 'then', 'else'].includes(k));
  if (unknown.length) throw new TypeError(`t has unknown field ${JSON.stringify(unknown[0])} (fields: if, then, else)`);
  const [ifs, thens, elses] = [list(t.if, 't.if'), list(t.then, 't.then'), list(t.else, 't.else')];
  const count = ifs.length + thens.length + elses.length;
  if (count > MAX_TXN_OPS) throw new RangeError(`a transaction has at most ${MAX_TXN_OPS} comparisons and operations, got ${count}`);
  const native = {
    compares: ifs.map((c, i) => compare(c, `t.if[${i}]`)),
    then: thens.map((op, i) => operation(core, op, `t.then[${i}]`)),
    otherwise: elses.map((op, i) => operation(core, op, `t.else[${i}]`)),
  };
  const o = writeOpts(opts);
  const r = await core.call((n) => n.txn(native, nativeOpts(o)), o.signal);
  const results = r.results.map((res) => (res.existed === undefined || res.existed === null ? entryOf(res.entry) : { existed: res.existed }));
  const written = { index: r.index, term: r.term, succeeded: r.succeeded, results };
  return r.duplicate ? { ...written, duplicate: true } : written;
}

module.exports = { txn, MAX_TXN_OPS };
