'use strict';
// runWhileLeader: starts `job` whenever the node holds a quorum-confirmed leader lease and
// aborts it the moment the lease is lost or the node stops. Starts and aborts strictly
// alternate: a new run starts only after the previous one settled. The lease is an instant:
// a timer re-checks it when it would run out, so a job ends on time even when the engine
// is too stalled to report the loss.

const { RaftError } = require('./errors.js');

/**
 * @param {import('./node.js').RaftNode} node
 * @param {(ctx: { signal: AbortSignal, term: number }) => unknown} job
 * @param {AbortSignal | undefined} signal
 * @param {{ subscribe(fn: () => void): () => void, remainingMs(): number }} lease
 */
function runWhileLeader(node, job, signal, lease) {
  let cancelled = false;
  let controller = null; // of the current run
  let running = null; // promise of the current run
  let expiry = null; // timer at the instant the current lease would end

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
    if (controller && !controller.signal.aborted && (!lead || node.term !== controller.term)) {
      const why = cancelled ? 'cancelled' : node.role === 'stopped' ? 'node stopped' : 'leadership lost';
      controller.abort(new RaftError('ERR_NOT_LEADER', `runWhileLeader: ${why}`, { leaderId: node.leaderId }));
    }
    if (lead && !running) {
      const term = node.term;
      controller = new AbortController();
      controller.term = term;
      const ctx = { signal: controller.signal, term };
      running = (async () => {
        try {
          await job(ctx);
        } catch (err) {
          if (!ctx.signal.aborted) node.reportError(err);
        }
      })().finally(() => {
        running = null;
        controller = null;
        if (!cancelled) evaluate();
      });
    }
    watchExpiry();
  };

  const unsubscribe = lease.subscribe(evaluate);
  const cancel = async () => {
    cancelled = true;
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

module.exports = { runWhileLeader };
