'use strict';
// Values are stored as canonical MessagePack (object keys sorted), so that byte equality in
// the engine is deep equality of decoded values (used by cas). Binary comes back as Buffer.

const { Encoder } = require('@msgpack/msgpack');
const { decodeMsgpack } = require('./msgpack-decode.js');

const encoder = new Encoder({ sortKeys: true });

function checkEncodable(value, path) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'number':
      return;
    case 'bigint':
    case 'undefined':
    case 'function':
    case 'symbol':
      throw new TypeError(`${path} must be MessagePack-encodable, got ${typeof value}`);
    default:
      if (value === null || ArrayBuffer.isView(value)) return;
      if (Array.isArray(value)) {
        value.forEach((v, i) => checkEncodable(v, `${path}[${i}]`));
        return;
      }
      for (const [k, v] of Object.entries(value)) checkEncodable(v, `${path}.${k}`);
  }
}

/** Encodes a user value; `what` names the argument in errors. */
function encode(value, what = 'value') {
  checkEncodable(value, what);
  const bytes = encoder.encode(value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes stored bytes; `null`/`undefined` (absent) decode to `undefined`. */
function decode(bytes) {
  if (bytes === null || bytes === undefined) return undefined;
  return decodeMsgpack(bytes);
}

module.exports = { encode, decode };
