'use strict';
// runWhileLeader: starts `job` whenever the node holds a quorum-confirmed leader lease and
// aborts it the moment the lease is lost or the node stops. Starts and aborts strictly
// alternate: a new run starts only after the previous one settled. The lease is an instant:
// a timer re-checks it when it would run out, so a job ends on time even when the engine
// is too stalled to report the loss.
//
// A job that returns or throws while the node still leads is started again, after a backoff
// (RESTART_MIN_MS doubling to RESTART_MAX_MS, jittered): an empty or failing job never spins
// the event loop. A new reign (another term) starts at once; a run that lasted at least
// RESTART_MAX_MS resets the backoff. Throws are reported as `error` events (ERR_CALLBACK).

const { RaftError, abortError, callbackError } = require('./errors.js');
const check = require('./options.js');

/** @typedef {import('./core.js').NodeCore} NodeCore */

const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;

/**
 * @param {{ isLeader: boolean, term: number, role: string, leaderId: string | null, reportError(err: unknown): void }} node
 * @param {(ctx: { signal: AbortSignal, term: number }) => unknown} job
 * @param {AbortSignal | undefined} signal
 * @param {{ subscribe(fn: () => void): () => void, remainingMs(): number }} lease
 */
function runWhileLeader(node, job, signal, lease) {
  let cancelled = false;
  let controller = null; // of the current run
  let controllerTerm = 0; // the term it runs in
  let running = null; // promise of the current run
  let expiry = null; // timer at the instant the current lease would end
  let restart = null; // { term, at, delay }: when a job that ended in this reign may run again
  let backoff = null; // timer for that instant

  const watchExpiry = () => {
    clearTimeout(expiry);
    expiry = null;
    if (!controller || controller.signal.aborted) return;
    // Renewed leases move the instant on: check again then.
    expiry = setTimeout(evaluate, Math.max(1, Math.ceil(lease.remainingMs())));
    expiry.unref();
  };

  const evaluate = () => {
    const lead = !cancelled && node.isLeader;
    if (controller && !controller.signal.aborted && (!lead || node.term !== controllerTerm)) {
      const why = cancelled ? 'cancelled' : node.role === 'stopped' ? 'node stopped' : 'leadership lost';
      controller.abort(new RaftError('ERR_NOT_LEADER', `runWhileLeader: ${why}`, { leaderId: node.leaderId }));
    }
    if (lead && !running && restart && restart.term === node.term && Date.now() < restart.at) {
      if (!backoff) {
        backoff = setTimeout(() => {
          backoff = null;
          evaluate();
        }, restart.at - Date.now());
        backoff.unref();
      }
    } else if (lead && !running) {
      const term = node.term;
      const startedAt = Date.now();
      controller = new AbortController();
      controllerTerm = term;
      const ctx = { signal: controller.signal, term };
      running = (async () => {
        try {
          await job(ctx);
        } catch (err) {
          if (!ctx.signal.aborted) node.reportError(callbackError(err, 'a runWhileLeader job'));
        }
      })().finally(() => {
        running = null;
        controller = null;
        // Ended on its own in this reign: wait before the next run.
        const ranMs = Date.now() - startedAt;
        const previous = restart && restart.term === term && ranMs < RESTART_MAX_MS ? restart.delay : 0;
        const delay = previous ? Math.min(RESTART_MAX_MS, previous * 2) : RESTART_MIN_MS;
        restart = { term, delay, at: Date.now() + delay * (0.5 + Math.random() / 2) };
        if (!cancelled) evaluate();
      });
    }
    watchExpiry();
  };

  const unsubscribe = lease.subscribe(evaluate);
  const cancel = async () => {
    cancelled = true;
    clearTimeout(backoff);
    unsubscribe();
    evaluate();
    if (running) await running;
  };
  if (signal) {
    if (signal.aborted) cancelled = true;
    else signal.addEventListener('abort', () => void cancel(), { once: true });
  }
  evaluate();
  return cancel;
}

/**
 * The public `runWhileLeader(job, opts)`: checks its arguments and feeds the lease of `core`.
 * @param {NodeCore} core
 */
function whileLeader(core, job, opts) {
  if (typeof job !== 'function') throw new TypeError(`job must be a function, got ${check.typeName(job)}`);
  const signal = check.signal(check.opts(opts).signal);
  return runWhileLeader(core.node, job, signal, {
    subscribe: (fn) => {
      core.leaseListeners.add(fn);
      return () => core.leaseListeners.delete(fn);
    },
    remainingMs: () => (core.state === 'running' ? (core.native?.status()?.leaseRemainingMs ?? 0) : 0),
  });
}

/**
 * Resolves with the leader's id once one is known (at once if it is).
 * @param {NodeCore} core
 * @param {{ leaderId: string | null }} node
 */
function waitForLeader(core, node, opts) {
  const o = check.opts(opts);
  const timeoutMs = check.timeout(o.timeoutMs, 'opts.timeoutMs', 10_000);
  const signal = check.signal(o.signal);
  if (signal && signal.aborted) return Promise.reject(abortError(signal));
  const known = node.leaderId;
  if (known && core.state === 'running') return Promise.resolve(known);
  if (core.state === 'stopped' || core.state === 'stopping') {
    return Promise.reject(new RaftError('ERR_STOPPED', `node ${core.id} is stopped`));
  }
  const emitter = core.node;
  return new Promise((resolve, reject) => {
    const done = (fn, v) => {
      clearTimeout(timer);
      emitter.off('leaderChange', onChange);
      emitter.off('stopped', onStopped);
      if (signal) signal.removeEventListener('abort', onAbort);
      fn(v);
    };
    const onChange = (e) => e.leaderId && done(resolve, e.leaderId);
    const onStopped = () => done(reject, new RaftError('ERR_STOPPED', `node ${core.id} stopped`));
    const onAbort = () => done(reject, abortError(signal));
    const timer = setTimeout(() => done(reject, new RaftError('ERR_TIMEOUT', `no leader within ${timeoutMs} ms`)), timeoutMs);
    emitter.on('leaderChange', onChange);
    emitter.on('stopped', onStopped);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Hands leadership to `to` (or the most up-to-date voter); resolves with the new leader.
 * @param {NodeCore} core
 */
async function transferLeadership(core, to, opts) {
  if (to !== undefined && to !== null) check.memberName('to', to);
  const timeoutMs = check.timeout(check.opts(opts).timeoutMs);
  return core.call((n) => n.transferLeadership(to ?? null, timeoutMs));
}

module.exports = { runWhileLeader, whileLeader, waitForLeader, transferLeadership };
