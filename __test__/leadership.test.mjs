// runWhileLeader, transferLeadership and waitForLeader.
import { describe, it, expect } from 'vitest';
import { RaftNode } from 'raftline';
import { waitFor } from './helpers.mjs';
import { clusterPerTest } from './clusters.mjs';

const cluster = clusterPerTest();

describe('runWhileLeader', () => {
  it('starts and aborts strictly alternate across a leader kill, never on two nodes at once', async () => {
    const c = await cluster({ size: 3 });
    const log = []; // [node, 'start' | 'abort', term]
    let running = 0;
    let maxRunning = 0;
    const cancels = c.nodes.map((node) =>
      node.runWhileLeader(async ({ signal, term }) => {
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        log.push([node.id, 'start', term]);
        expect(node.isLeader).toBe(true);
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        running -= 1;
        log.push([node.id, 'abort', term]);
      }),
    );
    const first = await c.waitForLeader();
    await waitFor(() => log.some(([id, what]) => id === first.id && what === 'start'), { what: 'job starts on the leader' });
    await c.kill(first.id);
    await waitFor(() => log.some(([id, what]) => id === first.id && what === 'abort'), { what: 'killed leader aborts' });
    const second = await c.waitForLeader();
    await waitFor(() => log.some(([id, what]) => id === second.id && what === 'start'), { what: 'job moves to the new leader' });
    // A graceful handoff moves it again.
    const third = c.nodes.find((n) => n !== first && n !== second);
    await second.transferLeadership(third.id);
    await waitFor(() => log.some(([id, what]) => id === third.id && what === 'start'), { what: 'job follows the transfer' });
    await Promise.all(cancels.map((cancel) => cancel()));

    expect(maxRunning).toBe(1);
    // Per node, starts and aborts alternate and every start is aborted in the end.
    for (const node of c.nodes) {
      const mine = log.filter(([id]) => id === node.id).map(([, what]) => what);
      mine.forEach((what, i) => expect(what).toBe(i % 2 === 0 ? 'start' : 'abort'));
      expect(mine.length % 2).toBe(0);
    }
    // Globally: a start only after the previous run's abort.
    for (let i = 1; i < log.length; i++) {
      if (log[i][1] === 'start') expect(log[i - 1][1]).toBe('abort');
    }
    // Terms only grow: fencing tokens.
    const terms = log.filter(([, what]) => what === 'start').map(([, , term]) => term);
    expect([...terms].sort((a, b) => a - b)).toEqual(terms);
    expect(new Set(terms).size).toBe(terms.length);
  });

  it('a job ends when the lease runs out, even while the engine is stalled', async () => {
    const c = await cluster({ size: 3, timing: 'default' });
    const leader = await c.waitForLeader();
    let abortedAt = 0;
    let started = false;
    const cancel = leader.runWhileLeader(async ({ signal }) => {
      started = true;
      await new Promise((r) => signal.addEventListener('abort', r));
      abortedAt = Date.now();
    });
    await waitFor(() => started, { what: 'job started' });
    // The engine blocks for 2 s (a disk stalled in fsync): no event can say the lease ended.
    const stalledAt = Date.now();
    const stall = c.stall(leader.id, 2000);
    await waitFor(() => abortedAt > 0, { what: 'job aborted' });
    expect(leader.isLeader).toBe(false);
    expect(abortedAt - stalledAt).toBeLessThan(600); // the lease is 120 ms at default timing
    await stall;
    await cancel();
  });

  it('cancel aborts the running job and waits for it; a stop aborts it too', async () => {
    const c = await cluster({ size: 1 });
    const [n] = c.nodes;
    let aborted = 0;
    let started = 0;
    const cancel = n.runWhileLeader(async ({ signal }) => {
      started += 1;
      await new Promise((r) => signal.addEventListener('abort', r));
      aborted += 1;
    });
    await waitFor(() => started === 1, { what: 'job started' });
    await cancel();
    expect(aborted).toBe(1);
    const ac = new AbortController();
    n.runWhileLeader(async ({ signal }) => {
      started += 1;
      await new Promise((r) => signal.addEventListener('abort', r));
      aborted += 1;
    }, { signal: ac.signal });
    await waitFor(() => started === 2, { what: 'second job started' });
    await n.stop();
    await waitFor(() => aborted === 2, { what: 'stop aborts the job' });
  });
});

describe('leadership', () => {
  it('transferLeadership hands over to the chosen or the best voter; followers get ERR_NOT_LEADER', async () => {
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    const follower = c.nodes.find((n) => n !== leader);
    await expect(follower.transferLeadership()).rejects.toMatchObject({ code: 'ERR_NOT_LEADER', leaderId: leader.id });
    await expect(leader.transferLeadership('nope')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_MEMBER' });
    const to = await leader.transferLeadership();
    expect(to).not.toBe(leader.id);
    const next = await c.waitForLeader();
    expect(next.id).toBe(to);
    await next.set('after-transfer', true);
  });

  it('waitForLeader resolves when known, times out with ERR_TIMEOUT, rejects AbortError on abort', async () => {
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    expect(await c.nodes[2].waitForLeader()).toBe(leader.id);
    // A lone node of a 3-member cluster never sees a leader.
    const lone = new RaftNode({ id: 'a', peers: { a: 'ws://127.0.0.1:1', b: 'ws://127.0.0.1:2', c: 'ws://127.0.0.1:3' }, listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50 });
    await lone.start();
    try {
      await expect(lone.waitForLeader({ timeoutMs: 100 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
      const ac = new AbortController();
      const waiting = lone.waitForLeader({ signal: ac.signal });
      ac.abort();
      await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
      // Writes wait for a leader until their deadline, then say none was known.
      await expect(lone.set('k', 1, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'ERR_NO_LEADER' });
    } finally {
      await lone.stop();
    }
  });
});
