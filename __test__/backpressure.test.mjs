// Backpressure: past maxPendingWrites a write fails at once with ERR_OVERLOADED (nothing
// done) instead of queuing, the writes it holds all complete, and the Express error handler
// answers 503 with Retry-After.
import { describe, it, expect } from 'vitest';
import express from 'express';
import { RaftNode } from 'raftline';
import { errorHandler } from 'raftline/express';
import { clusterPerTest } from './clusters.mjs';

const cluster = clusterPerTest();

describe('maxPendingWrites', () => {
  it('past the bound writes fail fast with ERR_OVERLOADED; those held all apply', async () => {
    const c = await cluster({ size: 3, maxPendingWrites: 100 });
    const leader = await c.waitForLeader();
    const node = c.nodes.find((n) => n !== leader);
    // Phase 1: a follower's engine stalls (as in a long fsync) while 300 writes arrive.
    let stallEnded = 0;
    const stalled = c.stall(node.id, 300).then(() => (stallEnded = Date.now()));
    const writes = Array.from({ length: 300 }, (_, i) =>
      node.set(`k/${i}`, i, { timeoutMs: 10_000 }).then(
        () => ({ ok: true, at: Date.now() }),
        (err) => ({ err, at: Date.now() }),
      ),
    );
    await stalled;
    const outcomes = await Promise.all(writes);
    // Phase 2: the engine held 100 and refused the rest in the turn that took them, not at
    // their 10 s deadline: each ERR_OVERLOADED naming the bound.
    const refused = outcomes.filter((o) => o.err);
    expect(outcomes.length - refused.length).toBe(100);
    expect(refused).toHaveLength(200);
    for (const { err, at } of refused) {
      expect(err).toMatchObject({ code: 'ERR_OVERLOADED', message: expect.stringMatching(/limit is 100: option maxPendingWrites/) });
      expect(at - stallEnded).toBeLessThan(1000);
    }
    // Nothing of the refused ones was written; the held ones were, in the order issued.
    const written = (await node.entries({ prefix: 'k/' })).map(([k]) => Number(k.slice(2)));
    expect(written.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('errorHandler() answers ERR_OVERLOADED with 503 and Retry-After', async () => {
    const c = await cluster({ size: 1, maxPendingWrites: 1 });
    const node = await c.waitForLeader();
    const app = express();
    app.post('/w', async (_req, res, next) => {
      try {
        // Both arrive while the engine is busy: it takes them in one turn.
        const busy = c.stall(node.id, 50);
        const [a, b] = await Promise.allSettled([node.set('a', 1), node.set('b', 1)]);
        await busy;
        if (b.status === 'rejected') throw b.reason;
        res.json(a.value);
      } catch (err) {
        next(err);
      }
    });
    app.use(errorHandler({ retryAfterSeconds: 3 }));
    const server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const r = await fetch(`http://127.0.0.1:${server.address().port}/w`, { method: 'POST' });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('3');
      expect((await r.json()).error.code).toBe('ERR_OVERLOADED');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses a bound out of range', () => {
    for (const bad of [0, -1, 2 ** 20 + 1]) {
      expect(() => new RaftNode({ id: 'a', maxPendingWrites: bad })).toThrow(RangeError);
    }
    expect(() => new RaftNode({ id: 'a', maxPendingWrites: 1.5 })).toThrow(/options\.maxPendingWrites/);
  });
});
