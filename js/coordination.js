'use strict';
// Sessions and locks (docs/API.md, "Coordination"). The engine keeps this node's sessions
// alive, gives them up before the cluster can expire them, queues and grants locks; this file
// turns its answers and events into Session and Lock objects whose signals abort in time.

const { RaftError, abortError } = require('./errors.js');
const check = require('./options.js');

/** @typedef {import('./core.js').NodeCore} NodeCore */

const DEFAULT_TTL_MS = 10_000;
const MAX_TTL_MS = 24 * 60 * 60 * 1000;
const MAX_NAME_BYTES = 4096;

// Internals of a Session, out of users' reach.
const kEnd = Symbol('raftline.session.end');
const kEngineId = Symbol('raftline.session.engineId');
const kCore = Symbol('raftline.session.core');

/** The sessions and lock requests of one node (NodeCore#coordination). */
class Coordination {
  /** Open sessions of this node by engine id. @type {Map<number, Session>} */
  sessions = new Map();
  /** Lock requests waiting for a grant, by `${sessionId}\0${name}`. @type {Map<string, Grant>} */
  grants = new Map();
  /** Locks held through this node, by the same key. @type {Map<string, Lock>} */
  held = new Map();

  /** The engine reports session `id` lost (expired, or given up before it could expire). */
  sessionLost(id) {
    const session = this.sessions.get(id);
    if (session) session[kEnd](new RaftError('ERR_SESSION_LOST', `session ${id} was lost: no keepalive applied within its TTL`));
  }

  /** The engine granted lock `name` to session `id` with `fence`. */
  granted(name, id, fence) {
    const grant = this.grants.get(`${id}\0${name}`);
    if (grant) grant.resolve(fence);
  }

  /** The node stops: its sessions are no longer kept alive, so their holders stop now. */
  stopped(nodeId) {
    for (const session of [...this.sessions.values()]) {
      session[kEnd](new RaftError('ERR_SESSION_LOST', `node ${nodeId} stopped: its sessions are no longer kept alive`));
    }
  }
}


/** A lock request's wait for its grant event (which may come before the request's answer). */
class Grant {
  /** @type {number | null} */
  fence = null;
  /** @type {((fence: number) => void) | null} */
  #wake = null;

  resolve(fence) {
    this.fence = fence;
    if (this.#wake) this.#wake(fence);
  }

  /** @returns {Promise<number>} */
  wait() {
    if (this.fence !== null) return Promise.resolve(this.fence);
    return new Promise((resolve) => (this.#wake = resolve));
  }
}

class Session {
  #core;
  #engineId;
  #controller = new AbortController();
  /** @type {Promise<void> | null} */
  #closing = null;

  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;

  /** @param {NodeCore} core @param {number} engineId @param {number} ttlMs */
  constructor(core, engineId, ttlMs) {
    this.#core = core;
    this.#engineId = engineId;
    /** @readonly */
    this.id = String(engineId);
    /** @readonly */
    this.ttlMs = ttlMs;
    this.#watch();
  }

  /**
   * Aborts the signal when the engine's deadline for the session passes. The deadline is
   * read without the engine's driver: a driver stalled (a disk hanging an fsync) cannot
   * report the loss, and this timer does not need it to.
   */
  #watch() {
    this.#timer = null;
    if (!this.alive) return;
    const left = this.#core.native ? this.#core.native.sessionValidFor(this.#engineId) : null;
    if (left === null || left <= 0) {
      this[kEnd](new RaftError('ERR_SESSION_LOST', `session ${this.id} was lost: no keepalive applied within its TTL`));
      return;
    }
    this.#timer = setTimeout(() => this.#watch(), Math.ceil(left));
    this.#timer.unref();
  }

  get signal() {
    return this.#controller.signal;
  }

  get alive() {
    return !this.#controller.signal.aborted;
  }

  /** The engine's id (internal: lock requests name it). */
  get [kEngineId]() {
    return this.#engineId;
  }

  /** The node state it belongs to (internal). */
  get [kCore]() {
    return this.#core;
  }

  /** Ends the session here: the signal aborts with `reason`; it is forgotten. */
  [kEnd](reason) {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#core.coordination.sessions.delete(this.#engineId);
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /**
   * Revokes the session: its signal aborts first (work under its locks stops before anyone
   * else can hold them), then one entry ends it, deleting its keys and releasing its locks.
   * Idempotent. If the entry does not commit, the session expires after its TTL.
   */
  close() {
    if (!this.#closing) this.#closing = this.#close();
    return this.#closing;
  }

  async #close() {
    const wasAlive = this.alive;
    this[kEnd](new RaftError('ERR_SESSION_LOST', `session ${this.id} was closed`));
    if (!wasAlive || this.#core.state !== 'running') return;
    // A close is idempotent: one whose outcome is unknown (a leader change) is sent again,
    // for up to a TTL (after which the session has expired anyway).
    const core = this.#core;
    const deadline = Date.now() + Math.min(this.ttlMs, 30_000);
    await retrying(() => core.call((n) => n.closeSession(this.#engineId, 5000)), deadline, undefined, null);
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }
}


class Lock {
  #release;
  #controller = new AbortController();
  /** @type {Promise<void> | null} */
  #releasing = null;

  /**
   * @param {string} name @param {number} fence @param {Session} session
   * @param {(lock: Lock) => Promise<void>} release
   */
  constructor(name, fence, session, release) {
    /** @readonly */
    this.name = name;
    /** @readonly */
    this.fence = fence;
    this.#release = release;
    const lost = () => this.#controller.abort(session.signal.reason);
    if (session.signal.aborted) {
      lost();
    } else {
      session.signal.addEventListener('abort', lost, { once: true });
      // Released first: the session (which may hold many locks in turn) stops telling it.
      this.#controller.signal.addEventListener('abort', () => session.signal.removeEventListener('abort', lost), { once: true });
    }
  }

  /** Aborted when the lock is lost (its session ended) or released. */
  get signal() {
    return this.#controller.signal;
  }

  /** Releases the lock (the next waiter gets it in the same entry). Idempotent. */
  release() {
    if (!this.#releasing) {
      if (!this.#controller.signal.aborted) this.#controller.abort(new DOMException(`lock ${JSON.stringify(this.name)} was released`, 'AbortError'));
      this.#releasing = this.#release(this);
    }
    return this.#releasing;
  }

  async [Symbol.asyncDispose]() {
    await this.release();
  }
}

/** @param {NodeCore} core */
function ttlOf(core, value, name) {
  const min = Math.max(100, core.config.native.heartbeatMs * 10);
  if (value === undefined) return Math.max(DEFAULT_TTL_MS, min);
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${name} must be an integer number of ms, got ${check.typeName(value)}`);
  if (value < min || value > MAX_TTL_MS) {
    throw new RangeError(`${name} must be ${min}-${MAX_TTL_MS} ms (at least ten heartbeats), got ${value}`);
  }
  return value;
}

/**
 * Opens a session that this node keeps alive.
 * @param {NodeCore} core
 */
async function openSession(core, opts) {
  const o = check.opts(opts);
  const ttlMs = ttlOf(core, o.ttlMs, 'opts.ttlMs');
  const signal = check.signal(o.signal);
  if (signal && signal.aborted) throw abortError(signal);
  const id = await core.call((n) => n.openSession(ttlMs, 5000));
  const session = new Session(core, id, ttlMs);
  core.coordination.sessions.set(id, session);
  if (signal) {
    // Aborted while opening or later: the session closes.
    if (signal.aborted) {
      await session.close().catch(() => {});
      throw abortError(signal);
    }
    const onAbort = () => session.close().catch((err) => core.node.reportError(err));
    signal.addEventListener('abort', onAbort, { once: true });
    session.signal.addEventListener('abort', () => signal.removeEventListener('abort', onAbort), { once: true });
  }
  return session;
}

function lockName(name) {
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${check.typeName(name)}`);
  const bytes = Buffer.byteLength(name);
  if (bytes === 0 || bytes > MAX_NAME_BYTES) throw new RangeError(`name must be 1-${MAX_NAME_BYTES} bytes of UTF-8, got ${bytes}`);
  return name;
}

/**
 * lock() (`wait`) and tryLock(): resolves with a Lock, or (tryLock, taken) null.
 * @param {NodeCore} core
 * @param {import('./node.js').RaftNode} node
 */
async function acquire(core, node, name, opts, wait) {
  lockName(name);
  const o = check.opts(opts);
  if (o.session !== undefined && !(o.session instanceof Session)) throw new TypeError(`opts.session must be a Session of this node, got ${check.typeName(o.session)}`);
  if (o.session !== undefined && o.ttlMs !== undefined) throw new TypeError('opts.ttlMs is the TTL of the session a lock makes for itself: give it without opts.session');
  const ttlMs = o.session ? o.session.ttlMs : ttlOf(core, o.ttlMs, 'opts.ttlMs');
  const timeoutMs = o.timeoutMs === undefined ? undefined : check.timeout(o.timeoutMs);
  const signal = check.signal(o.signal);
  if (signal && signal.aborted) throw abortError(signal);
  core.running();
  const own = o.session === undefined;
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  // An opening of unknown outcome is asked again; if the first did open a session, its node
  // closes it as it applies (nobody knows its id).
  const session = own ? await retrying(() => openSession(core, { ttlMs }), deadline, signal) : o.session;
  if (!own) sessionIdOf(core, session, 'opts.session');
  try {
    const lock = await acquireIn(core, session, name, { wait, deadline, timeoutMs, signal, own });
    // A close that fails leaves the session to expire: tryLock's answer stands.
    if (lock === null && own) await session.close().catch(() => {});
    return lock;
  } catch (err) {
    if (own) await session.close().catch(() => {});
    throw err;
  }
}

/** Asks for `name` in `session`, waiting for the grant when queued. */
async function acquireIn(core, session, name, { wait, deadline, timeoutMs, signal, own }) {
  const c = core.coordination;
  const key = `${session[kEngineId]}\0${name}`;
  const existing = c.held.get(key);
  if (existing && !existing.signal.aborted) return existing;
  const grant = new Grant();
  c.grants.set(key, grant);
  try {
    // A request is idempotent (asking again finds the grant or the place in the queue), so
    // one whose outcome is unknown is simply asked again.
    const ask = () => {
      const requestMs = Math.min(5000, deadline === undefined ? 5000 : Math.max(1, deadline - Date.now()));
      return core.call((n) => n.lock(name, session[kEngineId], wait, requestMs), anyOf(signal, session.signal));
    };
    const reply = await retrying(ask, deadline, signal);
    let fence;
    if (reply.state === 'granted') fence = reply.fence;
    else if (reply.state === 'busy') return null;
    else fence = await waitForGrant(grant, { deadline, signal, session, name, timeoutMs });
    const lock = new Lock(name, fence, session, (l) => release(core, session, l, own));
    c.held.set(key, lock);
    lock.signal.addEventListener('abort', () => c.held.get(key) === lock && c.held.delete(key), { once: true });
    return lock;
  } catch (err) {
    // Queued or granted meanwhile, or unknown (a request that timed out): leave the queue or
    // give the lock back. An own session is closed by the caller instead (one entry).
    if (!own && session.alive && core.state === 'running') {
      await unlock(core, session, name).catch(() => {});
    }
    throw err;
  } finally {
    if (c.grants.get(key) === grant) c.grants.delete(key);
  }
}

/** Codes after which a request's outcome is unknown or it reached no leader: asked again. */
const RETRIED = new Set(['ERR_TIMEOUT', 'ERR_NO_LEADER', 'ERR_NOT_LEADER']);

/**
 * Runs `op` (an idempotent request) until it succeeds, fails otherwise, or `deadline` passes:
 * then ERR_LOCK_TIMEOUT with the last failure as its cause (`timeoutCode` null: the last
 * failure itself). Waits an election-sized pause between tries.
 */
async function retrying(op, deadline, signal, timeoutCode = 'ERR_LOCK_TIMEOUT') {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof RaftError) || !RETRIED.has(err.code)) throw err;
      const pause = Math.min(200, 25 * 2 ** attempt);
      if (deadline !== undefined && Date.now() + pause >= deadline) {
        if (timeoutCode === null) throw err;
        throw new RaftError(timeoutCode, `the lock request did not complete in time: ${err.message}`, { cause: err });
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
      if (signal && signal.aborted) throw abortError(signal);
    }
  }
}

/** Waits for the grant event, the deadline, the caller's signal or the session's end. */
function waitForGrant(grant, { deadline, signal, session, name, timeoutMs }) {
  return new Promise((resolve, reject) => {
    let timer = null;
    const done = () => {
      if (timer) clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', onAbort);
      session.signal.removeEventListener('abort', onLost);
    };
    const onAbort = () => {
      done();
      reject(abortError(signal));
    };
    const onLost = () => {
      done();
      reject(session.signal.reason);
    };
    if (deadline !== undefined) {
      timer = setTimeout(() => {
        done();
        reject(new RaftError('ERR_LOCK_TIMEOUT', `lock ${JSON.stringify(name)} was not granted within ${timeoutMs} ms`));
      }, Math.max(0, deadline - Date.now()));
    }
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    session.signal.addEventListener('abort', onLost, { once: true });
    grant.wait().then((fence) => {
      done();
      resolve(fence);
    });
  });
}

/** Releases `lock`: its own session closes (one entry), or the lock is released in `session`. */
async function release(core, session, lock, own) {
  if (own) return session.close();
  if (!session.alive || core.state !== 'running') return;
  await unlock(core, session, lock.name);
}

/** Releases `name` in `session`, or leaves its queue; idempotent, so asked again on doubt. */
function unlock(core, session, name) {
  const deadline = Date.now() + Math.min(session.ttlMs, 30_000);
  return retrying(() => core.call((n) => n.unlock(name, session[kEngineId], 5000)), deadline, undefined, null);
}

/** An AbortSignal aborted by either signal (or the one given). */
function anyOf(a, b) {
  if (!a) return b;
  return AbortSignal.any([a, b]);
}

/**
 * Runs `fn({ fence, signal })` holding lock `name`, and releases it whatever happens.
 * @param {NodeCore} core
 */
async function withLock(core, node, name, fn, opts) {
  if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${check.typeName(fn)}`);
  const lock = await acquire(core, node, name, opts, true);
  try {
    return await fn({ fence: lock.fence, signal: lock.signal });
  } finally {
    // A release that fails leaves the lock to its session's expiry: reported, not thrown
    // over fn's own outcome.
    await lock.release().catch((err) => node.reportError(err));
  }
}

/**
 * The engine id of `session` given as `name` (an ephemeral write's session): a Session of
 * this node that is still alive.
 * @param {NodeCore} core
 */
function sessionIdOf(core, session, name) {
  if (!(session instanceof Session)) throw new TypeError(`${name} must be a Session, got ${check.typeName(session)}`);
  // Only the node that keeps a session knows in time that it is lost.
  if (session[kCore] !== core) throw new RaftError('ERR_INVALID', `${name}: session ${session.id} belongs to node ${session[kCore].id}, not ${core.id}`);
  if (!session.alive) throw new RaftError('ERR_SESSION_LOST', `session ${session.id} has ended`);
  return session[kEngineId];
}

module.exports = { Coordination, Session, Lock, openSession, acquire, withLock, sessionIdOf };
