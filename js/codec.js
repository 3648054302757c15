'use strict';
// Values are stored as canonical MessagePack (object keys sorted), so that byte equality in
// the engine is deep equality of decoded values (used by cas). Binary comes back as Buffer.
//
// Only what reads back as it was written is accepted: null, booleans, numbers, strings,
// arrays, plain objects, Buffer/Uint8Array and Date. Anything else (Map, Set, RegExp, Error,
// Promise, class instances, functions, bigint, undefined) would come back as something else
// or as `{}`: it is refused with a TypeError naming where in the value it sits.

const { Encoder } = require('@msgpack/msgpack');
const { decodeMsgpack } = require('./msgpack-decode.js');
const { RaftError } = require('./errors.js');
const { wellFormed } = require('./options.js');

// The encoder's own nesting limit: deeper values are refused here, with a path.
const MAX_DEPTH = 100;
const encoder = new Encoder({ sortKeys: true, maxDepth: MAX_DEPTH + 1 });

function describe(value) {
  if (typeof value !== 'object' && typeof value !== 'function') return typeof value;
  const ctor = Object.getPrototypeOf(value)?.constructor;
  if (typeof ctor !== 'function' || !ctor.name) return 'an object with a custom prototype';
  return `${/^[AEIOU]/.test(ctor.name) ? 'an' : 'a'} ${ctor.name}`;
}

function isPlainObject(value) {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A property name as it reads in a path: `.name`, or `["odd key"]`. */
function step(key) {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/**
 * Throws a TypeError naming the first part of `value` that would not read back as written.
 * `path()` says where `value` sits: built only for an error (building every property's path
 * for every write cost more than the check).
 */
function checkEncodable(value, path, ancestors) {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) wellFormed(value, path());
      return;
    case 'boolean':
    case 'number':
      return;
    case 'object':
      break;
    default:
      throw new TypeError(`${path()} must be MessagePack-encodable, got ${typeof value}`);
  }
  if (value === null || value instanceof Uint8Array || value instanceof Date) return;
  if (ancestors.includes(value)) throw new TypeError(`${path()} refers back to one of its own ancestors (a cyclic value)`);
  if (ancestors.length >= MAX_DEPTH) throw new TypeError(`${path()} is nested deeper than ${MAX_DEPTH} levels`);
  ancestors.push(value);
  if (Array.isArray(value)) {
    // An index loop, not forEach: holes are refused (they would read back as null).
    for (let i = 0; i < value.length; i++) checkEncodable(value[i], () => `${path()}[${i}]`, ancestors);
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) {
      const at = () => `${path()}${step(key)}`;
      if (!key.isWellFormed()) wellFormed(key, `${at()} (its key)`);
      checkEncodable(value[key], at, ancestors);
    }
  } else {
    throw new TypeError(
      `${path()} is ${describe(value)}: only null, booleans, numbers, strings, arrays, plain objects, Buffer/Uint8Array and Date are stored as they are`,
    );
  }
  ancestors.pop();
}

/** Encodes a user value; `what` names the argument in errors. */
function encode(value, what = 'value') {
  checkEncodable(value, () => what, []);
  // The encoder's own buffer, copied into Node's pooled slab: a new ArrayBuffer per value
  // (what `encode` returns) cost a malloc and a backing-store registration per write.
  const shared = encoder.encodeSharedRef(value);
  const bytes = Buffer.allocUnsafe(shared.byteLength);
  bytes.set(shared);
  return bytes;
}

/**
 * Decodes stored bytes; `null`/`undefined` (absent) decode to `undefined`. The value is what
 * a caller stored: its type is the caller's to say (as `get<T>()` does).
 * @returns {any}
 */
function decode(bytes) {
  if (bytes === null || bytes === undefined) return undefined;
  try {
    return decodeMsgpack(bytes);
  } catch (err) {
    throw new RaftError('ERR_INVALID', `a stored value is not MessagePack that raftline wrote: ${err.message}`, { cause: err });
  }
}

module.exports = { encode, decode };
