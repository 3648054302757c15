// Callbacks that misbehave: jobs that end at once or throw, event listeners that throw, and
// engine faults. None of them spins the event loop, escapes as an uncaught exception or
// leaves a node half stopped.
import { describe, it, expect, afterEach, beforeAll, afterAll } from 'vitest';
import { RaftNode, RaftError } from 'raftline';
import { createTestCluster } from 'raftline/testing';
import { waitFor, nextEvent } from './helpers.mjs';

const cleanup = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const uncaught = [];
const onUncaught = (e) => uncaught.push(e);
beforeAll(() => process.on('uncaughtException', onUncaught));
afterAll(() => process.off('uncaughtException', onUncaught));

async function soloLeader() {
  const node = new RaftNode({ id: 'solo', logLevel: 'off' });
  await node.start();
  cleanup.push(() => node.stop());
  await node.waitForLeader();
  await waitFor(() => node.isLeader, { what: 'a confirmed lease' });
  return node;
}

/** Counts how often a 10 ms interval fires during `ms`, while `fn` runs its course. */
async function intervalTicks(ms) {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  await new Promise((resolve) => setTimeout(resolve, ms));
  clearInterval(timer);
  return ticks;
}

describe('runWhileLeader with jobs that end at once', () => {
  for (const [name, job] of [
    ['an empty job', () => {}],
    ['a job that throws', () => { throw new Error('job failed'); }],
    ['a job that rejects', async () => { throw new Error('job failed'); }],
  ]) {
    it(`${name} is restarted with a backoff: the event loop keeps running and the heap stays put`, async () => {
      const node = await soloLeader();
      const errors = [];
      node.on('error', (e) => errors.push(e));
      let runs = 0;
      const cancel = node.runWhileLeader((ctx) => {
        runs++;
        return job(ctx);
      });
      const ticks = await intervalTicks(1000);
      await cancel();
      // Before the backoff: millions of runs, and not one tick of the interval.
      expect(ticks).toBeGreaterThan(40);
      expect(runs).toBeGreaterThanOrEqual(2); // restarted...
      expect(runs).toBeLessThanOrEqual(6); // ...at 100, 200, 400 ms (jittered), not in a loop
      if (name === 'an empty job') expect(errors).toEqual([]);
      else {
        expect(errors.length).toBe(runs);
        expect(errors[0]).toBeInstanceOf(RaftError);
        expect(errors[0].code).toBe('ERR_CALLBACK');
        expect(errors[0].cause.message).toBe('job failed');
      }
    });
  }

  it('a new reign starts the job at once, whatever the backoff', async () => {
    const c = await createTestCluster({ size: 3 });
    cleanup.push(() => c.close());
    const first = await c.waitForLeader();
    await waitFor(() => first.isLeader, { what: 'a confirmed lease' });
    const starts = [];
    const cancels = c.nodes.map((n) => n.runWhileLeader(({ term }) => void starts.push([n.id, term])));
    cleanup.push(() => Promise.all(cancels.map((f) => f())));
    await waitFor(() => starts.length >= 1, { what: 'the first run' });
    const next = await first.transferLeadership();
    const newLeader = c.node(next);
    await waitFor(() => starts.some(([id]) => id === next), { what: 'the new leader runs the job', timeoutMs: 2000 });
    expect(newLeader.term).toBeGreaterThan(starts[0][1]);
  });
});

describe('event listeners that throw', () => {
  it('the other listeners still run, the error goes to the error event, nothing is uncaught', async () => {
    const node = await soloLeader();
    const errors = [];
    node.on('error', (e) => errors.push(e));
    const seen = [];
    node.on('change', () => {
      throw new Error('listener bug');
    });
    node.on('change', (e) => seen.push(e.key));
    node.on('apply', async () => {
      throw new Error('async listener bug');
    });
    await node.set('a', 1);
    await node.set('b', 2);
    await waitFor(() => seen.length === 2 && errors.length === 4, { what: 'both changes and four errors' });
    expect(seen).toEqual(['a', 'b']);
    expect(errors.every((e) => e.code === 'ERR_CALLBACK')).toBe(true);
    expect(errors.map((e) => e.cause.message).sort()).toEqual(['async listener bug', 'async listener bug', 'listener bug', 'listener bug']);
    expect(errors.map((e) => e.message)).toContain("a 'change' listener threw: listener bug");
    expect(uncaught).toEqual([]);
  });

  it('without an error listener a throwing listener becomes a process warning, not a crash', async () => {
    const node = await soloLeader();
    const warned = new Promise((resolve) => process.once('warning', resolve));
    node.once('change', () => {
      throw new Error('unheard');
    });
    await node.set('k', 1);
    const warning = await warned;
    expect(warning.message).toContain('unheard');
    expect(await node.get('k')).toBe(1);
    expect(uncaught).toEqual([]);
  });
});

describe('engine faults', () => {
  for (const [kind, code] of [
    ['storage', 'ERR_STORAGE'],
    ['panic', 'ERR_INTERNAL'],
  ]) {
    it(`a ${kind} fault emits error with ${code}, then stopped; the others elect a leader and serve`, async () => {
      const c = await createTestCluster({ size: 3, logLevel: 'off' });
      cleanup.push(() => c.close());
      const leader = await c.waitForLeader();
      await leader.set('before', 1);
      const error = nextEvent(leader, 'error');
      const stopped = nextEvent(leader, 'stopped');
      await c.fault(leader.id, kind);
      const err = await error;
      expect(err).toBeInstanceOf(RaftError);
      expect(err.code).toBe(code);
      await stopped;
      expect(leader.role).toBe('stopped');
      await expect(leader.set('k', 1)).rejects.toMatchObject({ code: 'ERR_STOPPED' });
      const others = c.nodes.filter((n) => n !== leader);
      const next = await waitFor(() => others.find((n) => n.isLeader), { what: 'a new leader' });
      expect((await next.set('after', 2)).index).toBeGreaterThan(0);
      expect(uncaught).toEqual([]);
    });
  }
});
