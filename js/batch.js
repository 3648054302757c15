'use strict';
// Writes and reads cross into the engine in batches: the operations issued in one turn of
// the event loop are encoded into one buffer and submitted in one native call, and the
// answers come back many to a call. (One native call, one tokio task, one timer and one
// threadsafe call per write cost more than the consensus under them.) A turn that issues
// many operations submits every FLUSH_OPS of them at once instead of all at its end, so that
// the engine replicates the first while JavaScript still prepares the rest. The formats are
// described in src/binding/batch.rs, which reads and writes them.

const { RaftError } = require('./errors.js');

const KINDS = { set: 1, delete: 2, cas: 3, incr: 4, propose: 5, get: 6 };
const CONSISTENCY = { linearizable: 0, lease: 1, local: 2 };
/** kind, id, timeout, flags, key length. */
const HEADER_BYTES = 14;
/**
 * Operations queued in one turn that cross at once, before the turn ends. Answers to many
 * writes in flight arrive together, and the writes they resume are issued together: held
 * to the turn's end, the engine waited idle while JavaScript encoded them all, then
 * JavaScript waited while the engine replicated them (256 writes in flight: +15% writes/s
 * with 64, bench/run.mjs).
 */
const FLUSH_OPS = 64;

/**
 * A write's `once` is its idempotency key.
 * @typedef {{ kind: 'set' | 'propose', key: string, value: Buffer, timeoutMs: number, forward: boolean, once?: string }
 *   | { kind: 'delete', key: string, timeoutMs: number, forward: boolean, once?: string }
 *   | { kind: 'cas', key: string, expected: Buffer | null, next: Buffer | null, timeoutMs: number, forward: boolean, once?: string }
 *   | { kind: 'incr', key: string, by: number, timeoutMs: number, forward: boolean, once?: string }
 *   | { kind: 'get', key: string, consistency: 'linearizable' | 'lease' | 'local', timeoutMs: number, once?: undefined }} Op
 * @typedef {{ index: number, term: number, ok: boolean, value: Buffer | undefined, duplicate: boolean }} WriteAnswer
 */

function optionalBytes(buf) {
  return buf === null || buf === undefined ? 4 : 4 + buf.length;
}

function valueBytes(op) {
  switch (op.kind) {
    case 'set':
    case 'propose':
      return 4 + op.value.length;
    case 'cas':
      return optionalBytes(op.expected) + optionalBytes(op.next);
    case 'incr':
      return 8;
    default:
      return 0;
  }
}

function putOptional(buf, at, bytes) {
  if (bytes === null || bytes === undefined) {
    buf.writeInt32LE(-1, at);
    return at + 4;
  }
  buf.writeUInt32LE(bytes.length, at);
  bytes.copy(buf, at + 4);
  return at + 4 + bytes.length;
}

/** A value in an answer: `[value or undefined, where the next field starts]`. */
function readOptional(buf, at) {
  const len = buf.readInt32LE(at);
  if (len < 0) return [undefined, at + 4];
  return [buf.subarray(at + 4, at + 4 + len), at + 4 + len];
}

class Batch {
  /** @type {import('./binding').NativeRaftNode} */
  #native;
  /** @type {Array<Op & { id: number, keyBytes: number }>} */
  #queued = [];
  /** @type {Map<number, { resolve(value: unknown): void, reject(err: Error): void }>} */
  #pending = new Map();
  #next = 1;
  #flushing = false;

  /** @param {import('./binding').NativeRaftNode} native */
  constructor(native) {
    this.#native = native;
  }

  /**
   * Queues `op` for the batch of this turn; resolves with its answer (a write's
   * `{ index, term, ok, value }`, a read's value bytes), rejects with a RaftError.
   * @param {Op} op
   */
  submit(op) {
    const id = this.#next;
    this.#next = id >= 0xffff_ffff ? 1 : id + 1;
    // The op is the caller's fresh object: it takes its id and key length (no copy per write).
    const queued = /** @type {Op & { id: number, keyBytes: number }} */ (op);
    queued.id = id;
    queued.keyBytes = Buffer.byteLength(op.key);
    // The event loop stays alive while answers are awaited (the callback is weak).
    if (this.#pending.size === 0) this.#native.hold(true);
    // Awaited before it is queued: a flush that fails rejects it with the rest.
    const answer = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.#queued.push(queued);
    if (this.#queued.length >= FLUSH_OPS) {
      this.#flush();
    } else if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => {
        this.#flushing = false;
        this.#flush();
      });
    }
    return answer;
  }

  #flush() {
    const ops = this.#queued;
    if (ops.length === 0) return; // flushed when it reached FLUSH_OPS
    this.#queued = [];
    let size = 0;
    for (const op of ops) size += HEADER_BYTES + op.keyBytes + valueBytes(op) + (op.once === undefined ? 0 : 4 + Buffer.byteLength(op.once));
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    for (const op of ops) {
      buf[at] = KINDS[op.kind];
      buf.writeUInt32LE(op.id, at + 1);
      buf.writeUInt32LE(op.timeoutMs, at + 5);
      buf[at + 9] = op.kind === 'get' ? CONSISTENCY[op.consistency] << 1 : (op.forward ? 1 : 0) | (op.once === undefined ? 0 : 8);
      buf.writeUInt32LE(op.keyBytes, at + 10);
      at += HEADER_BYTES;
      at += buf.write(op.key, at, op.keyBytes, 'utf8');
      switch (op.kind) {
        case 'set':
        case 'propose':
          buf.writeUInt32LE(op.value.length, at);
          op.value.copy(buf, at + 4);
          at += 4 + op.value.length;
          break;
        case 'cas':
          at = putOptional(buf, putOptional(buf, at, op.expected), op.next);
          break;
        case 'incr':
          buf.writeDoubleLE(op.by, at);
          at += 8;
          break;
      }
      if (op.once !== undefined) {
        const n = buf.write(op.once, at + 4, 'utf8');
        buf.writeUInt32LE(n, at);
        at += 4 + n;
      }
    }
    try {
      this.#native.submit(buf);
    } catch (err) {
      const failure = err instanceof Error ? err : new Error(String(err));
      for (const op of ops) this.#settle(op.id, (p) => p.reject(failure));
      this.#release();
    }
  }

  /** No answer awaited any more: the event loop may end. */
  #release() {
    if (this.#pending.size === 0) this.#native.hold(false);
  }

  #settle(id, settle) {
    const waiting = this.#pending.get(id);
    if (waiting === undefined) return;
    this.#pending.delete(id);
    settle(waiting);
  }

  /** The answers the engine sent, many at once. @param {Buffer} buf */
  onAnswers(buf) {
    let at = 0;
    while (at < buf.length) {
      const id = buf.readUInt32LE(at);
      const tag = buf[at + 4];
      at += 5;
      if (tag === 0) {
        const index = buf.readDoubleLE(at);
        const term = buf.readDoubleLE(at + 8);
        const ok = (buf[at + 16] & 1) === 1;
        const duplicate = (buf[at + 16] & 2) === 2;
        let value;
        [value, at] = readOptional(buf, at + 17);
        this.#settle(id, (p) => p.resolve({ index, term, ok, value, duplicate }));
      } else if (tag === 1) {
        let value;
        [value, at] = readOptional(buf, at);
        this.#settle(id, (p) => p.resolve(value));
      } else {
        const codeLength = buf[at];
        const code = buf.toString('latin1', at + 1, at + 1 + codeLength);
        at += 1 + codeLength;
        const messageLength = buf.readUInt32LE(at);
        const message = buf.toString('utf8', at + 4, at + 4 + messageLength);
        let leader;
        [leader, at] = readOptional(buf, at + 4 + messageLength);
        const leaderId = leader === undefined ? null : leader.toString('utf8');
        this.#settle(id, (p) => p.reject(new RaftError(code, message, { leaderId })));
      }
    }
    this.#release();
  }
}

module.exports = { Batch };
