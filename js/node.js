'use strict';
// RaftNode: the public class. It validates arguments, encodes values, turns native results
// into Promises and RaftErrors, and fans each native event batch out as typed events.
// Consensus, reads and leases all live in the engine.

const { EventEmitter } = require('node:events');
const { NativeRaftNode } = require('./native.js');
const { RaftError, fromNative, abortError, callbackError } = require('./errors.js');
const { encode, decode } = require('./codec.js');
const check = require('./options.js');
const { WatchQueue } = require('./watch.js');
const { runWhileLeader } = require('./leadership.js');
const { metricsJson, prometheusText } = require('./metrics.js');

// Test clusters build nodes whose peer URLs are learnt after start (ephemeral ports).
const kInternal = Symbol('raftline.internal');

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

function writeResult(r) {
  return { index: r.index, term: r.term };
}

class RaftNode extends EventEmitter {
  #id;
  #config;
  #native = null;
  #state = 'new'; // new | starting | running | stopping | stopped
  #address = null;
  #url = null;
  #stopping = null;
  #starting = null;
  #watchers = new Set();
  #leaseListeners = new Set();
  #lastStatus = null;

  /** @param {import('../index').RaftNodeOptions} options */
  constructor(options, internal = {}) {
    super();
    // Applied entries cross into JS only while someone listens for them. A new listener
    // turns delivery on at once, before any write it may be waiting for is issued.
    const applied = (event) => event === 'apply' || event === 'change';
    this.on('newListener', (event) => applied(event) && this.#native && this.#native.setWantApplied(true));
    this.on('removeListener', (event) => applied(event) && this.#syncWantApplied());
    const validated = check.validateOptions(options, { allowUnknownUrls: internal === kInternal });
    this.#config = validated;
    this.#id = validated.native.id;
  }

  get id() {
    return this.#id;
  }

  get address() {
    return this.#address;
  }

  get url() {
    return this.#url;
  }

  async start() {
    if (this.#state !== 'new') {
      throw new RaftError('ERR_INVALID', `node ${this.#id} was already started`);
    }
    this.#state = 'starting';
    this.#starting = this.#startNative();
    return this.#starting;
  }

  async #startNative() {
    try {
      this.#native = new NativeRaftNode(this.#config.native);
      this.#syncWantApplied();
      const onLog = this.#config.logger === null ? undefined : (line) => this.#log(line);
      const { address, url } = await this.#native.start((batch) => this.#onEvents(batch.events), onLog);
      this.#address = address;
      this.#url = url;
      // stop() called meanwhile waits for this and then stops what started.
      if (this.#state === 'starting') this.#state = 'running';
    } catch (err) {
      this.#state = 'stopped';
      this.#native = null;
      throw fromNative(err);
    }
  }

  /** @param {{ transferLeadership?: boolean, timeoutMs?: number }} [opts] */
  async stop(opts) {
    const o = check.opts(opts);
    const transfer = o.transferLeadership === undefined ? true : check.boolean('opts.transferLeadership', o.transferLeadership);
    const timeoutMs = check.timeout(o.timeoutMs, 'opts.timeoutMs', 2000);
    if (this.#stopping) return this.#stopping;
    if (this.#state === 'new' || this.#state === 'stopped') {
      this.#state = 'stopped';
      return;
    }
    this.#stopping = this.#shutdown(transfer, timeoutMs, false);
    return this.#stopping;
  }

  /** Hooks for raftline/testing: peer URLs learnt after start, faults, abrupt kill. */
  get [kInternal]() {
    const native = () => {
      if (this.#state !== 'running') throw new RaftError('ERR_STOPPED', `node ${this.#id} is not running`);
      return this.#native;
    };
    return {
      setPeerUrl: (peer, url) => native().setPeerUrl(peer, url),
      blockPeer: (peer) => native().blockPeer(peer),
      stallDriver: (ms) => native().stallDriver(ms),
      injectFault: (kind) => native().injectFault(kind),
      clearFaults: () => this.#state === 'running' && this.#native.clearFaults(),
      kill: () => {
        if (!this.#stopping) this.#stopping = this.#shutdown(false, 0, true);
        return this.#stopping;
      },
    };
  }

  /**
   * Emits a background fault as `error`; without a listener (or when the listener throws) it
   * becomes a process warning instead of an uncaught exception.
   */
  reportError(err) {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', err);
        return;
      } catch (thrown) {
        err = thrown;
      }
    }
    process.emitWarning(`raftline node ${this.#id}: ${err && err.message}`, { code: err && err.code });
  }

  /**
   * Calls each listener of `event`. One that throws (or rejects) does not cut the others or the
   * rest of the batch short, and never escapes into the native callback: its error goes to
   * `error` as ERR_CALLBACK (see reportError).
   */
  #deliver(event, payload) {
    for (const listener of this.rawListeners(event)) {
      try {
        const r = listener.call(this, payload);
        if (r && typeof r.then === 'function') r.then(undefined, (err) => this.reportError(callbackError(err, `a '${event}' listener`)));
      } catch (err) {
        this.reportError(callbackError(err, `a '${event}' listener`));
      }
    }
  }

  /**
   * One engine log line to `options.logger`, pino style: `logger.warn({ node, target, ...fields },
   * message)`. Trace lines go to `logger.trace` when it exists, else to `logger.debug`.
   */
  #log(line) {
    const logger = this.#config.logger;
    const method = line.level === 'trace' && typeof logger.trace !== 'function' ? 'debug' : line.level;
    try {
      logger[method]({ node: this.#id, target: line.target, ...line.fields }, line.message);
    } catch (err) {
      this.reportError(callbackError(err, `logger.${method}()`));
    }
  }

  /** A stored value for an event; bytes that do not decode are reported and passed raw. */
  #decodeForEvent(bytes, where) {
    try {
      return decode(bytes);
    } catch (err) {
      this.reportError(new RaftError('ERR_INVALID', `${where}: ${err.message}`, { cause: err }));
      return Buffer.from(bytes);
    }
  }

  async #shutdown(transfer, timeoutMs, abrupt) {
    // A start in progress finishes first, so that what it started is stopped too.
    if (this.#starting) await this.#starting.catch(() => {});
    if (this.#state === 'stopped') {
      this.#deliver('stopped', {});
      return;
    }
    const live = this.#status();
    const wasLeader = live.role === 'leader';
    // From here on the node reports itself stopped, with the term it reached (terms never go back).
    const stoppedStatus = () => ({ ...(this.#native?.status() ?? live), role: 'stopped', leaderId: null, isLeader: false });
    this.#lastStatus = stoppedStatus();
    this.#state = 'stopping';
    this.#notifyLease(); // jobs stop the moment the node begins to stop
    const native = this.#native;
    if (transfer && !abrupt && native && wasLeader) {
      try {
        await native.transferLeadership(null, timeoutMs);
      } catch {
        // no other voter reachable: stop anyway
      }
    }
    if (native) {
      await (abrupt ? native.kill() : native.stop());
      this.#lastStatus = stoppedStatus();
    }
    this.#state = 'stopped';
    this.#notifyLease();
    for (const w of this.#watchers) w.close();
    this.#deliver('stopped', {});
  }

  async [Symbol.asyncDispose]() {
    await this.stop();
  }

  // ---- status and leadership -------------------------------------------------------------

  #status() {
    if (this.#state === 'stopped' || this.#state === 'stopping') {
      return this.#lastStatus ?? { id: this.#id, role: 'stopped', term: 0, leaderId: null, isLeader: false, commitIndex: 0, appliedIndex: 0, lastIndex: 0, snapshotIndex: 0, voters: [], learners: [] };
    }
    const s = this.#native && this.#native.status();
    return s ?? { id: this.#id, role: 'follower', term: 0, leaderId: null, isLeader: false, commitIndex: 0, appliedIndex: 0, lastIndex: 0, snapshotIndex: 0, voters: [], learners: [] };
  }

  get role() {
    return this.#state === 'stopped' || this.#state === 'stopping' ? 'stopped' : this.#status().role;
  }

  get leaderId() {
    return this.#status().leaderId ?? null;
  }

  get term() {
    return this.#status().term;
  }

  get isLeader() {
    return this.#state === 'running' && this.#status().isLeader;
  }

  status() {
    const s = this.#status();
    return {
      id: this.#id,
      role: this.role,
      term: s.term,
      leaderId: s.leaderId ?? null,
      leaderHttpUrl: s.leaderHttpUrl ?? null,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      lastIndex: s.lastIndex,
      snapshotIndex: s.snapshotIndex,
      members: this.members(),
    };
  }

  /** This node's figures as a plain object (for OpenTelemetry or any JSON consumer). */
  metricsJson() {
    return metricsJson({ status: this.status(), members: this.members(), counters: this.#native?.metrics() ?? null });
  }

  /** This node's figures in the Prometheus text format (for a `/metrics` endpoint). */
  metrics() {
    return prometheusText(this.metricsJson());
  }

  members() {
    const peers = this.#config.native.peers;
    const url = (id) => (id === this.#id ? this.#url : peers[id] || null);
    if (this.#state === 'running') {
      return this.#native.members().map((m) => ({
        id: m.id,
        url: m.url ?? url(m.id),
        voter: m.voter,
        health: m.health,
        matchIndex: m.matchIndex ?? null,
        lastContactMs: m.lastContactMs === undefined || m.lastContactMs === null ? null : Math.round(m.lastContactMs),
        httpUrl: m.httpUrl ?? null,
      }));
    }
    const s = this.#status();
    const httpUrl = (id) => (id === this.#id ? this.#config.httpUrl : null);
    const member = (id, voter) => ({ id, url: url(id), voter, health: 'unknown', matchIndex: null, lastContactMs: null, httpUrl: httpUrl(id) });
    return [...s.voters.map((id) => member(id, true)), ...s.learners.map((id) => member(id, false))];
  }

  /** @param {{ timeoutMs?: number, signal?: AbortSignal }} [opts] */
  waitForLeader(opts) {
    const o = check.opts(opts);
    const timeoutMs = check.timeout(o.timeoutMs, 'opts.timeoutMs', 10_000);
    const signal = check.signal(o.signal);
    if (signal && signal.aborted) return Promise.reject(abortError(signal));
    const known = this.leaderId;
    if (known && this.#state === 'running') return Promise.resolve(known);
    if (this.#state === 'stopped' || this.#state === 'stopping') {
      return Promise.reject(new RaftError('ERR_STOPPED', `node ${this.#id} is stopped`));
    }
    return new Promise((resolve, reject) => {
      const done = (fn, v) => {
        clearTimeout(timer);
        this.off('leaderChange', onChange);
        this.off('stopped', onStopped);
        if (signal) signal.removeEventListener('abort', onAbort);
        fn(v);
      };
      const onChange = (e) => e.leaderId && done(resolve, e.leaderId);
      const onStopped = () => done(reject, new RaftError('ERR_STOPPED', `node ${this.#id} stopped`));
      const onAbort = () => done(reject, abortError(signal));
      const timer = setTimeout(() => done(reject, new RaftError('ERR_TIMEOUT', `no leader within ${timeoutMs} ms`)), timeoutMs);
      this.on('leaderChange', onChange);
      this.on('stopped', onStopped);
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  onLeaderChange(cb) {
    if (typeof cb !== 'function') throw new TypeError(`cb must be a function, got ${check.typeName(cb)}`);
    this.on('leaderChange', cb);
    return () => this.off('leaderChange', cb);
  }

  /** @param {string} [to] @param {{ timeoutMs?: number }} [opts] */
  async transferLeadership(to, opts) {
    if (to !== undefined && to !== null) check.memberName('to', to);
    const timeoutMs = check.timeout(check.opts(opts).timeoutMs);
    return this.#call((n) => n.transferLeadership(to ?? null, timeoutMs));
  }

  runWhileLeader(job, opts) {
    if (typeof job !== 'function') throw new TypeError(`job must be a function, got ${check.typeName(job)}`);
    const signal = check.signal(check.opts(opts).signal);
    return runWhileLeader(this, job, signal, {
      subscribe: (fn) => {
        this.#leaseListeners.add(fn);
        return () => this.#leaseListeners.delete(fn);
      },
      remainingMs: () => (this.#state === 'running' ? (this.#native.status()?.leaseRemainingMs ?? 0) : 0),
    });
  }

  #notifyLease() {
    for (const fn of [...this.#leaseListeners]) fn();
  }

  // ---- membership --------------------------------------------------------------------------

  /** Adds a member started with `join: true`, listening at `url`; resolves once applied here. */
  async addMember(id, url, opts) {
    check.memberName('id', id);
    if (typeof url !== 'string' || !/^wss?:\/\/\S+$/.test(url)) {
      throw new TypeError(`url must be a ws:// or wss:// URL, got ${JSON.stringify(url)}`);
    }
    const o = check.opts(opts);
    const learner = o.learner === undefined ? false : check.boolean('opts.learner', o.learner);
    const timeoutMs = check.timeout(o.timeoutMs, 'opts.timeoutMs', 10_000);
    await this.#call((n) => n.addMember(id, url, learner, timeoutMs));
  }

  /** Makes a learner a voter. */
  async promoteMember(id, opts) {
    check.memberName('id', id);
    const timeoutMs = check.timeout(check.opts(opts).timeoutMs, 'opts.timeoutMs', 10_000);
    await this.#call((n) => n.promoteMember(id, timeoutMs));
  }

  /** Removes a member. A leader removing itself hands leadership over first (the engine does). */
  async removeMember(id, opts) {
    check.memberName('id', id);
    const timeoutMs = check.timeout(check.opts(opts).timeoutMs, 'opts.timeoutMs', 10_000);
    await this.#call((n) => n.removeMember(id, timeoutMs));
  }

  // ---- key-value -------------------------------------------------------------------------

  async #call(op, signal) {
    if (this.#state !== 'running') {
      throw new RaftError('ERR_STOPPED', `node ${this.#id} is ${this.#state === 'new' ? 'not started' : 'stopped'}`);
    }
    try {
      return await abortable(op(this.#native), signal);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw fromNative(err);
    }
  }

  #writeOpts(opts) {
    const o = check.opts(opts);
    return {
      timeoutMs: check.timeout(o.timeoutMs),
      forward: o.forward === undefined ? true : check.boolean('opts.forward', o.forward),
      signal: check.signal(o.signal),
    };
  }

  async set(key, value, opts) {
    check.key(key);
    if (value === undefined) throw new TypeError('value must be MessagePack-encodable, got undefined (use delete)');
    const bytes = encode(value);
    const o = this.#writeOpts(opts);
    return writeResult(await this.#call((n) => n.set(key, bytes, o.timeoutMs, o.forward), o.signal));
  }

  async delete(key, opts) {
    check.key(key);
    const o = this.#writeOpts(opts);
    const r = await this.#call((n) => n.delete(key, o.timeoutMs, o.forward), o.signal);
    return { ...writeResult(r), existed: r.ok };
  }

  /** `expected === undefined`: the key must be absent. `next === undefined`: delete it. */
  async cas(key, expected, next, opts) {
    check.key(key);
    const exp = expected === undefined ? null : encode(expected, 'expected');
    const nxt = next === undefined ? null : encode(next, 'next');
    const o = this.#writeOpts(opts);
    const r = await this.#call((n) => n.cas(key, exp, nxt, o.timeoutMs, o.forward), o.signal);
    return { ...writeResult(r), ok: r.ok, current: decode(r.value) };
  }

  async batch(ops, opts) {
    if (!Array.isArray(ops)) throw new TypeError(`ops must be an array, got ${check.typeName(ops)}`);
    const native = ops.map((op, i) => {
      if (op === null || typeof op !== 'object') throw new TypeError(`ops[${i}] must be an object`);
      check.key(op.key, `ops[${i}].key`);
      if (op.op === 'set') {
        if (op.value === undefined) throw new TypeError(`ops[${i}].value must be MessagePack-encodable, got undefined`);
        return { op: 'set', key: op.key, value: encode(op.value, `ops[${i}].value`) };
      }
      if (op.op === 'delete') return { op: 'delete', key: op.key };
      throw new TypeError(`ops[${i}].op must be 'set' or 'delete', got ${JSON.stringify(op.op)}`);
    });
    const o = this.#writeOpts(opts);
    return writeResult(await this.#call((n) => n.batch(native, o.timeoutMs, o.forward), o.signal));
  }

  /**
   * Read-modify-write through cas. A conflict (another write got in between) is retried with
   * jittered backoff until the deadline, so contention alone never fails it early; `fn` runs
   * locally, never replicated, and may run several times.
   */
  async update(key, fn, opts) {
    check.key(key);
    if (typeof fn !== 'function') throw new TypeError(`fn must be a function, got ${check.typeName(fn)}`);
    const o = this.#writeOpts(opts);
    const deadline = Date.now() + o.timeoutMs;
    const remaining = () => Math.max(1, deadline - Date.now());
    // The loop compares the stored bytes themselves: `fn` gets them decoded, never re-encoded.
    let current = (await this.#call((n) => n.get(key, 'linearizable', o.timeoutMs), o.signal)) ?? null;
    for (let attempt = 0; ; attempt++) {
      const next = await fn(decode(current));
      const nextBytes = next === undefined ? null : encode(next, 'fn()');
      const r = await this.#call((n) => n.cas(key, current, nextBytes, remaining(), o.forward), o.signal);
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

  /** Atomic numeric add in one entry (absent key = 0); resolves with the new value. */
  async incr(key, by = 1, opts) {
    check.key(key);
    if (typeof by !== 'number') throw new TypeError(`by must be a number, got ${check.typeName(by)}`);
    if (!Number.isFinite(by)) throw new RangeError(`by must be a finite number, got ${by}`);
    const o = this.#writeOpts(opts);
    const r = await this.#call((n) => n.incr(key, by, o.timeoutMs, o.forward), o.signal);
    if (!r.ok) {
      throw new RaftError('ERR_INVALID', `incr(${JSON.stringify(key)}): the value there is not a number (entry ${r.index} changed nothing)`);
    }
    return { ...writeResult(r), value: decode(r.value) };
  }

  #readOpts(opts) {
    const o = check.opts(opts);
    const consistency = o.consistency ?? 'linearizable';
    if (!['linearizable', 'lease', 'local'].includes(consistency)) {
      throw new TypeError(`opts.consistency must be 'linearizable', 'lease' or 'local', got ${JSON.stringify(consistency)}`);
    }
    return { consistency, timeoutMs: check.timeout(o.timeoutMs), signal: check.signal(o.signal) };
  }

  async get(key, opts) {
    check.key(key);
    const o = this.#readOpts(opts);
    return decode(await this.#call((n) => n.get(key, o.consistency, o.timeoutMs), o.signal));
  }

  getLocal(key) {
    check.key(key);
    if (this.#state !== 'running') throw new RaftError('ERR_STOPPED', `node ${this.#id} is not running`);
    return decode(this.#native.getLocal(key));
  }

  async entries(opts) {
    const o = this.#readOpts(opts);
    const prefix = check.prefix(check.opts(opts).prefix);
    const pairs = await this.#call((n) => n.entries(prefix, o.consistency, o.timeoutMs), o.signal);
    return pairs.map((p) => [p.key, decode(p.value)]);
  }

  watch(opts) {
    const o = check.opts(opts);
    const prefix = check.prefix(o.prefix);
    const signal = check.signal(o.signal);
    const maxBuffered = o.maxBuffered === undefined ? undefined : check.integer('opts.maxBuffered', o.maxBuffered, 1, 2 ** 31 - 1);
    const queue = new WatchQueue(
      prefix,
      signal,
      () => {
        this.#watchers.delete(queue);
        this.#syncWantApplied();
      },
      maxBuffered,
    );
    if (this.#state === 'stopped') queue.close();
    else this.#watchers.add(queue);
    this.#syncWantApplied();
    return queue;
  }

  async propose(data, opts) {
    if (!(data instanceof Uint8Array)) throw new TypeError(`data must be a Buffer or Uint8Array, got ${check.typeName(data)}`);
    const o = this.#writeOpts(opts);
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return writeResult(await this.#call((n) => n.propose(buf, o.timeoutMs, o.forward), o.signal));
  }

  // ---- events ------------------------------------------------------------------------------

  #onEvents(events) {
    for (const e of events) {
      switch (e.kind) {
        case 'leader':
          this.#deliver('leaderChange', {
            leaderId: e.leaderId ?? null,
            previousLeaderId: e.previousLeaderId ?? null,
            term: e.term,
            isLeader: e.leaderId === this.#id,
          });
          break;
        case 'role':
          this.#deliver('roleChange', { role: e.role, previousRole: e.previousRole, term: e.term });
          break;
        case 'lease':
          this.#notifyLease();
          break;
        case 'applied':
          this.#onApplied(e.entries);
          break;
        case 'snapshot':
          // Restored on start or installed from the leader: the app's state machine first.
          if (e.restore !== undefined && e.restore !== null) this.#restoreApp(e.restore);
          this.#deliver('snapshot', { index: e.index, term: e.term, bytes: e.bytes });
          break;
        case 'membership':
          this.#deliver('membershipChange', { members: this.members(), index: e.index });
          break;
        case 'peerHealth':
          this.#deliver('peerHealth', { id: e.peer, health: e.health, previousHealth: e.previousHealth });
          break;
        case 'snapshotRequest':
          this.#saveApp(e.index);
          break;
        case 'failed':
          // The engine stopped itself: report why, then finish the stop (port, timers, jobs).
          this.reportError(new RaftError(e.code ?? 'ERR_INTERNAL', e.message));
          if (!this.#stopping && this.#state === 'running') this.#stopping = this.#shutdown(false, 0, false);
          break;
      }
    }
  }

  /** The app's state machine is exactly at `index` here (events arrive in log order). */
  #saveApp(index) {
    const hooks = this.#config.snapshotHooks;
    try {
      const data = hooks.save();
      if (!(data instanceof Uint8Array)) throw new TypeError('snapshotHooks.save() must return a Buffer or Uint8Array');
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      this.#native.provideSnapshot(index, buf).catch((err) => this.reportError(fromNative(err)));
    } catch (err) {
      this.reportError(callbackError(err, 'snapshotHooks.save()'));
    }
  }

  #restoreApp(data) {
    try {
      this.#config.snapshotHooks.restore(data);
    } catch (err) {
      this.reportError(callbackError(err, 'snapshotHooks.restore()'));
    }
  }

  #syncWantApplied() {
    const want =
      this.#config.snapshotHooks !== null ||
      this.listenerCount('apply') > 0 ||
      this.listenerCount('change') > 0 ||
      this.#watchers.size > 0;
    if (this.#native) this.#native.setWantApplied(want);
  }

  #onApplied(entries) {
    const wantApply = this.listenerCount('apply') > 0;
    const wantChange = this.listenerCount('change') > 0 || this.#watchers.size > 0;
    if (!wantApply && !wantChange) return;
    for (const entry of entries) {
      const changes = wantChange
        ? entry.changes.map((c) => ({
            index: entry.index,
            key: c.key,
            op: c.value === undefined || c.value === null ? 'delete' : 'set',
            value: this.#decodeForEvent(c.value, `entry ${entry.index}, key ${JSON.stringify(c.key)}`),
            prev: this.#decodeForEvent(c.prev, `entry ${entry.index}, key ${JSON.stringify(c.key)} (previous value)`),
          }))
        : [];
      if (wantApply) this.#deliver('apply', applyEvent(entry, (b, what) => this.#decodeForEvent(b, `entry ${entry.index}${what}`)));
      for (const change of changes) {
        this.#deliver('change', change);
        for (const w of this.#watchers) w.push(change);
      }
    }
  }
}

/** The `apply` event of one entry; `decodeValue(bytes, where)` decodes its values. */
function applyEvent(entry, decodeValue) {
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

module.exports = { RaftNode, kInternal };
