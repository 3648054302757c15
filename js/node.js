'use strict';
// RaftNode: the public class. This file holds its life (start, stop, status); each other
// concern is a file of its own over the node's NodeCore (js/core.js): key-value in kv.js,
// membership in membership.js, leadership in leadership.js, native events in events.js.
// Consensus, reads and leases all live in the engine.

const { EventEmitter } = require('node:events');
const { NativeRaftNode } = require('./native.js');
const { RaftError, fromNative, callbackError } = require('./errors.js');
const check = require('./options.js');
const { NodeCore, settled } = require('./core.js');
const { onEvents } = require('./events.js');
const { Batch } = require('./batch.js');
const kv = require('./kv.js');
const { txn } = require('./txn.js');
const membership = require('./membership.js');
const leadership = require('./leadership.js');
const coordination = require('./coordination.js');
const operations = require('./operations.js');
const { metricsJson, prometheusText } = require('./metrics.js');

// Test clusters build nodes whose peer URLs are learnt after start (ephemeral ports).
const kInternal = Symbol('raftline.internal');
// The crash tests build nodes whose kill loses what was not fsynced, as a power loss would.
const kPowerLoss = Symbol('raftline.powerLoss');

/** @implements {Omit<import('../index').RaftNode, keyof EventEmitter>} */
class RaftNode extends EventEmitter {
  /** This node's state, shared with the files of each concern. */
  #core;

  /** @param {import('../index').RaftNodeOptions} options */
  constructor(options, internal = {}) {
    super();
    const config = check.validateOptions(options, { allowUnknownUrls: internal === kInternal });
    if (internal === kPowerLoss) config.native.emulatePowerLoss = true;
    const core = new NodeCore(this, config);
    this.#core = core;
    // Applied entries cross into JS only while someone listens for them. A new listener
    // turns delivery on at once, before any write it may be waiting for is issued.
    const applied = (event) => event === 'apply' || event === 'change';
    this.on('newListener', (event) => applied(event) && core.native && core.native.setWantApplied(true));
    this.on('removeListener', (event) => applied(event) && core.syncWantApplied());
  }

  get id() {
    return this.#core.id;
  }

  get address() {
    return this.#core.address;
  }

  get url() {
    return this.#core.url;
  }

  // ---- life ----------------------------------------------------------------------------------

  async start() {
    const core = this.#core;
    if (core.state !== 'new') {
      throw new RaftError('ERR_INVALID', `node ${core.id} was already started`);
    }
    core.state = 'starting';
    core.starting = this.#startNative();
    return core.starting;
  }

  async #startNative() {
    const core = this.#core;
    try {
      core.native = new NativeRaftNode(core.config.native);
      const batch = new Batch(core.native);
      core.syncWantApplied();
      const onLog = core.config.logger === null ? undefined : (line) => this.#log(line);
      const events = { members: () => this.members(), shutdown: () => this.#stopItself() };
      const onBatch = (batch) => onEvents(core, batch.events, events);
      const onAnswers = (answers) => batch.onAnswers(answers);
      const { address, url } = settled(await core.native.start(onBatch, onAnswers, onLog));
      core.batch = batch;
      core.address = address;
      core.url = url;
      // stop() called meanwhile waits for this and then stops what started.
      if (core.state === 'starting') core.state = 'running';
    } catch (err) {
      core.state = 'stopped';
      core.native = null;
      throw fromNative(err);
    }
  }

  /** @param {{ transferLeadership?: boolean, timeoutMs?: number }} [opts] */
  async stop(opts) {
    const core = this.#core;
    const o = check.opts(opts);
    const transfer = o.transferLeadership === undefined ? true : check.boolean('opts.transferLeadership', o.transferLeadership);
    const timeoutMs = check.timeout(o.timeoutMs, 'opts.timeoutMs', 2000);
    if (core.stopping) return core.stopping;
    if (core.state === 'new' || core.state === 'stopped') {
      core.state = 'stopped';
      return;
    }
    core.stopping = this.#shutdown(transfer, timeoutMs, false);
    return core.stopping;
  }

  /** The engine stopped itself (a `failed` event): finish the stop (port, timers, jobs). */
  #stopItself() {
    const core = this.#core;
    if (!core.stopping && core.state === 'running') core.stopping = this.#shutdown(false, 0, false);
  }

  async #shutdown(transfer, timeoutMs, abrupt) {
    const core = this.#core;
    // A start in progress finishes first, so that what it started is stopped too.
    if (core.starting) await core.starting.catch(() => {});
    if (core.state === 'stopped') {
      core.deliver('stopped', {});
      return;
    }
    const live = core.status();
    const wasLeader = live.role === 'leader';
    // From here on the node reports itself stopped, with the term it reached (terms never go back).
    const stoppedStatus = () => ({ ...(core.native?.status() ?? live), role: 'stopped', leaderId: null, isLeader: false });
    core.lastStatus = stoppedStatus();
    core.state = 'stopping';
    core.notifyLease(); // jobs stop the moment the node begins to stop
    core.coordination.stopped(core.id); // and so do the holders of its sessions and locks
    const native = core.native;
    if (transfer && !abrupt && native && wasLeader) {
      // No other voter reachable (a failure resolved or thrown): stop anyway.
      await native.transferLeadership(null, timeoutMs).catch(() => {});
    }
    if (native) {
      await (abrupt ? native.kill() : native.stop());
      core.lastStatus = stoppedStatus();
    }
    core.state = 'stopped';
    core.notifyLease();
    for (const w of core.watchers) w.close();
    core.deliver('stopped', {});
  }

  async [Symbol.asyncDispose]() {
    await this.stop();
  }

  /** Hooks for raftline/testing: peer URLs learnt after start, faults, abrupt kill. */
  get [kInternal]() {
    const core = this.#core;
    return {
      setPeerUrl: (peer, url) => core.callSync((n) => n.setPeerUrl(peer, url)),
      blockPeer: (peer) => core.callSync((n) => n.blockPeer(peer)),
      stallDriver: (ms) => core.call((n) => n.stallDriver(ms)),
      injectFault: (kind) => core.call((n) => n.injectFault(kind)),
      clearFaults: () => core.state === 'running' && core.callSync((n) => n.clearFaults()),
      kill: () => {
        if (!core.stopping) core.stopping = this.#shutdown(false, 0, true);
        return core.stopping;
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
    process.emitWarning(`raftline node ${this.#core.id}: ${err && err.message}`, { code: err && err.code });
  }

  /**
   * One engine log line to `options.logger`, pino style: `logger.warn({ node, target, ...fields },
   * message)`. Trace lines go to `logger.trace` when it exists, else to `logger.debug`.
   */
  #log(line) {
    const logger = this.#core.config.logger;
    const method = line.level === 'trace' && typeof logger.trace !== 'function' ? 'debug' : line.level;
    try {
      logger[method]({ node: this.#core.id, target: line.target, ...line.fields }, line.message);
    } catch (err) {
      this.reportError(callbackError(err, `logger.${method}()`));
    }
  }

  // ---- status ------------------------------------------------------------------------------

  get role() {
    const core = this.#core;
    return core.state === 'stopped' || core.state === 'stopping' ? 'stopped' : core.status().role;
  }

  get leaderId() {
    return this.#core.status().leaderId ?? null;
  }

  get term() {
    return this.#core.status().term;
  }

  get isLeader() {
    const core = this.#core;
    return core.state === 'running' && core.status().isLeader;
  }

  status() {
    const s = this.#core.status();
    return {
      id: this.#core.id,
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
    return metricsJson({ status: this.status(), members: this.members(), counters: this.#core.native?.metrics() ?? null });
  }

  /** This node's figures in the Prometheus text format (for a `/metrics` endpoint). */
  metrics() {
    return prometheusText(this.metricsJson());
  }

  // ---- leadership (leadership.js) ------------------------------------------------------------

  waitForLeader(opts) {
    return leadership.waitForLeader(this.#core, this, opts);
  }

  onLeaderChange(cb) {
    if (typeof cb !== 'function') throw new TypeError(`cb must be a function, got ${check.typeName(cb)}`);
    this.on('leaderChange', cb);
    return () => this.off('leaderChange', cb);
  }

  transferLeadership(to, opts) {
    return leadership.transferLeadership(this.#core, to, opts);
  }

  runWhileLeader(job, opts) {
    return leadership.whileLeader(this.#core, job, opts);
  }

  // ---- membership (membership.js) ------------------------------------------------------------

  members() {
    return membership.members(this.#core);
  }

  addMember(id, url, opts) {
    return membership.addMember(this.#core, id, url, opts);
  }

  promoteMember(id, opts) {
    return membership.promoteMember(this.#core, id, opts);
  }

  removeMember(id, opts) {
    return membership.removeMember(this.#core, id, opts);
  }

  // ---- coordination (coordination.js) --------------------------------------------------------

  session(opts) {
    return coordination.openSession(this.#core, opts);
  }

  lock(name, opts) {
    return coordination.acquire(this.#core, this, name, opts, true);
  }

  tryLock(name, opts) {
    return coordination.acquire(this.#core, this, name, opts, false);
  }

  withLock(name, fn, opts) {
    return coordination.withLock(this.#core, this, name, fn, opts);
  }

  // ---- key-value (kv.js) ---------------------------------------------------------------------

  set(key, value, opts) {
    return kv.set(this.#core, key, value, opts);
  }

  delete(key, opts) {
    return kv.delete(this.#core, key, opts);
  }

  cas(key, expected, next, opts) {
    return kv.cas(this.#core, key, expected, next, opts);
  }

  batch(ops, opts) {
    return kv.batch(this.#core, ops, opts);
  }

  update(key, fn, opts) {
    return kv.update(this.#core, key, fn, opts);
  }

  incr(key, by, opts) {
    return kv.incr(this.#core, key, by, opts);
  }

  propose(data, opts) {
    return kv.propose(this.#core, data, opts);
  }

  get(key, opts) {
    return kv.get(this.#core, key, opts);
  }

  getLocal(key) {
    return kv.getLocal(this.#core, key);
  }

  entries(opts) {
    return kv.entries(this.#core, opts);
  }

  getEntry(key, opts) {
    return kv.getEntry(this.#core, key, opts);
  }

  txn(t, opts) {
    return txn(this.#core, t, opts, kv.writeOpts);
  }

  watch(opts) {
    return kv.watch(this.#core, opts);
  }

  // ---- operations ----------------------------------------------------------------------------

  backup(dest, opts) {
    return operations.backup(this.#core, dest, opts);
  }

  static restore(backup, opts) {
    return operations.restore(backup, opts);
  }
}

module.exports = { RaftNode, kInternal, kPowerLoss };
