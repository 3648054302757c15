// Many writers on one key over a real 3-node cluster: update() retries through conflicts
// until its deadline, incr() adds atomically in one entry.
import { describe, it, expect, afterEach } from 'vitest';
import { createTestCluster } from 'raftline/testing';
import { waitFor } from './helpers.mjs';

const cleanup = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function cluster() {
  const c = await createTestCluster({ size: 3 });
  cleanup.push(() => c.close());
  await c.waitForLeader();
  return c;
}

describe('contention', () => {
  it('150 concurrent update() calls spread over 3 nodes all succeed, and the counter reads 150', async () => {
    const c = await cluster();
    let calls = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 150 }, (_, i) =>
        c.nodes[i % 3].update(
          'counter',
          (prev) => {
            calls++;
            return (prev ?? 0) + 1;
          },
          { timeoutMs: 60_000 },
        ),
      ),
    );
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason.code ?? r.reason.message);
    expect(failed).toEqual([]);
    // Each write landed once: retries re-ran fn but never double-counted.
    const indexes = new Set(results.map((r) => r.value.index));
    expect(indexes.size).toBe(150);
    expect(await c.nodes[0].get('counter')).toBe(150);
    expect(calls).toBeGreaterThan(150); // there was contention to get through
  }, 90_000);

  it('incr() from every node adds atomically, reads back as a number that cas compares by value', async () => {
    const c = await cluster();
    const results = await Promise.all(Array.from({ length: 90 }, (_, i) => c.nodes[i % 3].incr('hits', i % 2 ? 2 : 1)));
    // Each increment saw a distinct running total: 45 ones and 45 twos.
    expect(new Set(results.map((r) => r.value)).size).toBe(90);
    expect(Math.max(...results.map((r) => r.value))).toBe(135);
    await waitFor(() => c.nodes.every((n) => n.getLocal('hits') === 135), { what: 'every node applied 135' });
    // The engine writes the sum exactly as JS would: cas against the number matches.
    expect((await c.nodes[1].cas('hits', 135, 0.5)).ok).toBe(true);
    expect((await c.nodes[2].incr('hits', -1.25)).value).toBe(-0.75);
    expect((await c.nodes[0].incr('fresh')).value).toBe(1);
  });
});
