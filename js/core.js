'use strict';
// NodeCore: a RaftNode's state (a private field of the node: users never reach it), and the
// few things every concern (life, key-value, membership, leadership, events) does with it:
// call the native node, read its status, deliver an event.

const { NativeFailure } = require('./native.js');
const { RaftError, fromNative, abortError, callbackError } = require('./errors.js');
const { decode } = require('./codec.js');
const { Coordination } = require('./coordination.js');

/** @typedef {'new' | 'starting' | 'running' | 'stopping' | 'stopped'} NodeState */

/** Runs `promise` against an AbortSignal; the underlying operation may still complete. */
function abortable(promise, signal) {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * What an async native call resolved with: its value, or (a NativeFailure) the RaftError to
 * throw. Async native calls resolve their failures rather than reject, so that the engine's
 * code arrives as a property, not inside a message.
 * @template T
 * @param {T | NativeFailure} value
 * @returns {T}
 */
function settled(value) {
  if (value instanceof NativeFailure) throw fromNative(value);
  return value;
}

/** A status for a node that has none from the engine (not started, or stopped). */
function blankStatus(id, role) {
  return { id, role, term: 0, leaderId: null, isLeader: false, commitIndex: 0, appliedIndex: 0, lastIndex: 0, snapshotIndex: 0, voters: [], learners: [] };
}

class NodeCore {
  /**
   * @param {import('./node.js').RaftNode} node
   * @param {ReturnType<typeof import('./options.js').validateOptions>} config
   */
  constructor(node, config) {
    this.node = node;
    this.config = config;
    /** @type {string} */
    this.id = config.native.id;
    /** @type {import('./binding').NativeRaftNode | null} */
    this.native = null;
    /** Writes and reads crossing in batches (from start on). @type {import('./batch.js').Batch | null} */
    this.batch = null;
    /** @type {NodeState} */
    this.state = 'new';
    /** @type {string | null} */
    this.address = null;
    /** @type {string | null} */
    this.url = null;
    /** @type {Promise<void> | null} */
    this.stopping = null;
    /** @type {Promise<void> | null} */
    this.starting = null;
    /** @type {Set<import('./watch.js').WatchQueue>} */
    this.watchers = new Set();
    /** @type {Set<() => void>} */
    this.leaseListeners = new Set();
    /** The status a stopped node reports (the term it reached: terms never go back). */
    this.lastStatus = null;
    /** Sessions and lock requests (js/coordination.js). */
    this.coordination = new Coordination();
  }

  /** The native node, or ERR_STOPPED when the node is not running. */
  running() {
    if (this.state !== 'running' || this.native === null) {
      throw new RaftError('ERR_STOPPED', `node ${this.id} is ${this.state === 'new' ? 'not started' : 'stopped'}`);
    }
    return this.native;
  }

  /**
   * Calls an async native method on the running node, against `signal`.
   * @template T
   * @param {(native: import('./binding').NativeRaftNode) => Promise<T | NativeFailure>} op
   * @param {AbortSignal} [signal]
   * @returns {Promise<T>}
   */
  async call(op, signal) {
    const native = this.running();
    return settled(await this.#await(() => op(native), signal));
  }

  /**
   * Submits a write or a read in this turn's batch, against `signal`.
   * @param {import('./batch.js').Op} op
   * @param {AbortSignal} [signal]
   */
  async batched(op, signal) {
    this.running();
    return this.#await(() => this.batch.submit(op), signal);
  }

  /**
   * Starts a native call and awaits its answer against `signal`: an AbortError as it is,
   * any other failure (a throw when starting included) as a RaftError.
   */
  async #await(start, signal) {
    try {
      return await abortable(start(), signal);
    } catch (err) {
      if (err && /** @type {Error} */ (err).name === 'AbortError') throw err;
      throw fromNative(err);
    }
  }

  /**
   * Calls a synchronous native method on the running node; what it throws carries the
   * engine's code.
   * @template T
   * @param {(native: import('./binding').NativeRaftNode) => T} op
   * @returns {T}
   */
  callSync(op) {
    const native = this.running();
    try {
      return op(native);
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** The engine's status, or the one a node not running reports. */
  status() {
    if (this.state === 'stopped' || this.state === 'stopping') {
      return this.lastStatus ?? blankStatus(this.id, 'stopped');
    }
    return (this.native && this.native.status()) ?? blankStatus(this.id, 'follower');
  }

  /**
   * Calls each listener of `event`. One that throws (or rejects) does not cut the others or
   * the rest of the batch short, and never escapes into the native callback: its error goes
   * to `error` as ERR_CALLBACK (see RaftNode#reportError).
   */
  deliver(event, payload) {
    for (const listener of this.node.rawListeners(event)) {
      try {
        const r = listener.call(this.node, payload);
        if (r && typeof r.then === 'function') r.then(undefined, (err) => this.node.reportError(callbackError(err, `a '${event}' listener`)));
      } catch (err) {
        this.node.reportError(callbackError(err, `a '${event}' listener`));
      }
    }
  }

  /** A stored value for an event; bytes that do not decode are reported and passed raw. */
  decodeForEvent(bytes, where) {
    try {
      return decode(bytes);
    } catch (err) {
      this.node.reportError(new RaftError('ERR_INVALID', `${where}: ${err.message}`, { cause: err }));
      return Buffer.from(bytes);
    }
  }

  /** Applied entries cross into JS only while someone needs them. */
  syncWantApplied() {
    const node = this.node;
    const want = this.config.snapshotHooks !== null || node.listenerCount('apply') > 0 || node.listenerCount('change') > 0 || this.watchers.size > 0;
    if (this.native) this.native.setWantApplied(want);
  }

  /** The lease may have changed: runWhileLeader looks again. */
  notifyLease() {
    for (const fn of [...this.leaseListeners]) fn();
  }
}

module.exports = { NodeCore, settled };
