// In-memory nodes (no dataDir) snapshot and compact their log like durable ones: memory
// follows the state, not the history of writes. (bench/memory.mjs measures the RSS.)
import { describe, it, expect, afterEach } from 'vitest';
import { RaftNode } from 'raftline';
import { createTestCluster } from 'raftline/testing';
import { waitFor } from './helpers.mjs';

const cleanup = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('in-memory compaction', () => {
  it('every node keeps about snapshotEvery entries, and a member added later comes in through a snapshot', async () => {
    const c = await createTestCluster({ size: 3, snapshotEvery: 200 });
    cleanup.push(() => c.close());
    const leader = await c.waitForLeader();
    const snapshots = [];
    for (const n of c.nodes) n.on('snapshot', (e) => snapshots.push([n.id, e.index]));
    for (let i = 0; i < 2000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => leader.set(`k/${(i + j) % 20}`, i + j)));
    }
    const last = leader.status().lastIndex;
    await waitFor(() => c.nodes.every((n) => n.status().appliedIndex >= last), { what: 'every node applied' });
    for (const n of c.nodes) {
      const s = n.status();
      expect(s.snapshotIndex, n.id).toBeGreaterThan(last - 400);
      expect(s.lastIndex - s.snapshotIndex, n.id).toBeLessThan(400);
    }
    expect(new Set(snapshots.map(([id]) => id)).size).toBe(3);
    // A member added now (in memory too) cannot replay the log from its start: it comes
    // in through a snapshot.
    const peers = Object.fromEntries(c.nodes.map((n) => [n.id, n.url]));
    const n4 = new RaftNode({ id: 'n4', join: true, peers, secret: c.secret, listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50, logLevel: 'off' });
    cleanup.push(() => n4.stop());
    const installed = new Promise((resolve) => n4.once('snapshot', resolve));
    await n4.start();
    await leader.addMember('n4', n4.url, { learner: true });
    expect((await installed).index).toBeGreaterThan(last - 400);
    // (Writes within a round of 50 race each other: which value a key ends with is the
    // leader's to say, so the whole state is compared with its own.)
    const target = leader.status().commitIndex;
    await waitFor(() => n4.status().appliedIndex >= target, { what: 'the new member applies the log' });
    expect(await n4.entries({ consistency: 'local' })).toEqual(await leader.entries());
  });
});
