'use strict';
// Decodes the MessagePack that js/codec.js writes. The library's decoder refuses the key
// `__proto__` with an exception (a value like JSON.parse('{"__proto__": {}}') then threw out
// of every event that carried it, on every restart); this one keeps every key as plain data
// (own properties, never a prototype) and never throws anything but a RangeError on bytes
// it cannot read.

const utf8 = new TextDecoder('utf-8', { fatal: false });
const MAX_DEPTH = 512;

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new RangeError('truncated MessagePack value');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.need(1)); }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }
  i8() { return this.view.getInt8(this.need(1)); }
  i16() { return this.view.getInt16(this.need(2)); }
  i32() { return this.view.getInt32(this.need(4)); }
  u64() { const hi = this.u32(); return hi * 2 ** 32 + this.u32(); }
  i64() { const hi = this.i32(); return hi * 2 ** 32 + this.u32(); }
  f32() { return this.view.getFloat32(this.need(4)); }
  f64() { return this.view.getFloat64(this.need(8)); }

  str(n) {
    const at = this.need(n);
    return utf8.decode(this.bytes.subarray(at, at + n));
  }

  bin(n) {
    const at = this.need(n);
    return Buffer.from(this.bytes.subarray(at, at + n));
  }

  array(n, depth) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      const value = this.value(depth + 1);
      // defineProperty: a key named __proto__ stays an own property, not a prototype.
      Object.defineProperty(out, String(key), { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  ext(n) {
    const type = this.i8();
    const at = this.need(n);
    if (type !== -1) throw new RangeError(`unknown MessagePack extension type ${type}`);
    // The timestamp extension (a Date).
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset + at, n);
    if (n === 4) return new Date(view.getUint32(0) * 1000);
    if (n === 8) {
      const hi = view.getUint32(0);
      const lo = view.getUint32(4);
      const seconds = (hi & 0x3) * 2 ** 32 + lo;
      return new Date(seconds * 1000 + Math.floor((hi >>> 2) / 1e6));
    }
    if (n === 12) {
      const nanos = view.getUint32(0);
      const seconds = view.getInt32(4) * 2 ** 32 + view.getUint32(8);
      return new Date(seconds * 1000 + Math.floor(nanos / 1e6));
    }
    throw new RangeError(`timestamp of ${n} bytes`);
  }

  value(depth = 0) {
    if (depth > MAX_DEPTH) throw new RangeError('MessagePack value nested too deeply');
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0x80 && b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b >= 0x90 && b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b >= 0xa0 && b <= 0xbf) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: return this.f32();
      case 0xcb: return this.f64();
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return this.i8();
      case 0xd1: return this.i16();
      case 0xd2: return this.i32();
      case 0xd3: return this.i64();
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new RangeError(`unknown MessagePack type byte 0x${b.toString(16)}`);
    }
  }
}

/** Decodes one MessagePack value that fills `bytes`. */
function decodeMsgpack(bytes) {
  const reader = new Reader(bytes);
  const value = reader.value();
  if (reader.pos !== bytes.length) throw new RangeError('trailing bytes after a MessagePack value');
  return value;
}

module.exports = { decodeMsgpack };
