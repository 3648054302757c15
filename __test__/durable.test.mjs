// Durable storage through the JS API: restart with the same data, snapshot events,
// corruption refused with ERR_STORAGE.
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestCluster } from 'raftline/testing';
import { RaftNode } from 'raftline';
import { waitFor } from './helpers.mjs';

const dirs = [];
const tempDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'raftline-durable-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('durable storage', () => {
  it('a killed member restarts with its data, snapshots are reported, and it rejoins', async () => {
    const dataDir = tempDir();
    const c = await createTestCluster({ size: 3, dataDir, snapshotEvery: 200 });
    try {
      const leader = await c.waitForLeader();
      const snapshots = [];
      leader.on('snapshot', (e) => snapshots.push(e));
      for (let i = 0; i < 500; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => leader.set(`k${i + j}`, { i: i + j })));
      }
      expect(snapshots.length).toBeGreaterThanOrEqual(2);
      // Ten bursts of 50 writes: every member's log took them in far fewer fsyncs.
      for (const node of c.nodes) {
        expect(node.metricsJson().logSyncs).toBeGreaterThan(0);
        expect(node.metricsJson().logSyncs).toBeLessThan(250);
      }
      expect(snapshots[0]).toMatchObject({ term: leader.term });
      expect(snapshots[0].index).toBeGreaterThanOrEqual(200);
      expect(snapshots[0].bytes).toBeGreaterThan(0);
      expect(leader.status().snapshotIndex).toBeGreaterThan(0);

      const victim = c.nodes.find((n) => n !== leader);
      await c.kill(victim.id);
      await leader.set('while-down', true);
      const back = await c.restart(victim.id);
      expect(back).not.toBe(victim);
      expect(c.node(victim.id)).toBe(back);
      expect(back.address).toBe(victim.address);
      await waitFor(() => back.getLocal('while-down') === true, { what: 'restarted member catches up' });
      expect(back.getLocal('k499')).toEqual({ i: 499 });
      expect(await back.get('k0')).toEqual({ i: 0 });
    } finally {
      await c.close();
    }
  });

  it('a flipped byte in a committed record makes start() reject ERR_STORAGE naming the file', async () => {
    const dataDir = tempDir();
    const make = () => new RaftNode({ id: 'solo', dataDir, listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50 });
    const first = make();
    await first.start();
    await first.waitForLeader();
    for (let i = 0; i < 50; i++) await first.set(`k${i}`, 'x'.repeat(100));
    await first.stop();
    const wal = path.join(dataDir, 'wal', readdirSync(path.join(dataDir, 'wal')).sort().at(-1));
    const bytes = readFileSync(wal);
    bytes[Math.floor(bytes.length / 2)] ^= 0x55;
    writeFileSync(wal, bytes);
    const second = make();
    const err = await second.start().catch((e) => e);
    expect(err).toMatchObject({ name: 'RaftError', code: 'ERR_STORAGE' });
    expect(err.message).toContain(path.basename(wal));
    expect(second.role).toBe('stopped');
  });
});

/** A state machine of the application's own: a sum of raw increments, with its hooks. */
function counterMachine() {
  const state = { sum: 0, count: 0, restored: [] };
  state.attach = (node) =>
    node.on('apply', (e) => {
      if (e.op !== 'raw') return;
      state.sum += e.data.readInt32LE(0);
      state.count += 1;
    });
  state.hooks = {
    save: () => Buffer.from(JSON.stringify({ sum: state.sum, count: state.count })),
    restore: (data) => {
      const saved = data.length ? JSON.parse(data.toString()) : { sum: 0, count: 0 };
      state.restored.push(saved.count);
      state.sum = saved.sum;
      state.count = saved.count;
    },
  };
  return state;
}
const increment = (n) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
};

describe('snapshot hooks for propose users', () => {
  it('save() runs at the snapshot point; restore() brings the state back before later entries', async () => {
    const dataDir = tempDir();
    const base = { id: 'app', dataDir, listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50, snapshotEvery: 50 };
    const first = counterMachine();
    let node = new RaftNode({ ...base, snapshotHooks: first.hooks });
    first.attach(node);
    await node.start();
    await node.waitForLeader();
    let expected = 0;
    for (let i = 1; i <= 120; i++) {
      await node.propose(increment(i));
      expected += i;
    }
    // propose resolves when the engine applied it; the apply event follows right after.
    await waitFor(() => first.count === 120, { what: 'all increments applied' });
    await waitFor(() => node.status().snapshotIndex >= 100, { what: 'snapshots with app data' });
    expect(first.sum).toBe(expected);
    expect(first.restored).toEqual([]);
    await node.stop();

    // A new process starts empty: restore() first, then only the entries after the snapshot.
    const second = counterMachine();
    node = new RaftNode({ ...base, snapshotHooks: second.hooks });
    second.attach(node);
    await node.start();
    await waitFor(() => second.count === 120, { what: 'replay after the restored snapshot' });
    expect(second.restored.length).toBe(1);
    // The snapshot at index >= 100 holds the increments before it (the bootstrap conf change
    // and the first leader's no-op come first in the log).
    expect(second.restored[0]).toBeGreaterThanOrEqual(98);
    expect(second.sum).toBe(expected);
    await node.stop();
  });

  // Before: after one throw of save(), the node never snapshotted again (snapshotIndex 0 with
  // lastIndex far past snapshotEvery).
  it('a save() that throws is asked again at the next snapshot point', async () => {
    const dataDir = tempDir();
    const machine = counterMachine();
    const { save } = machine.hooks;
    const asked = [];
    let throws = 1;
    const hooks = {
      ...machine.hooks,
      save() {
        asked.push(node.status().appliedIndex);
        if (throws-- > 0) throw new Error('the disk of the app is full');
        return save();
      },
    };
    const node = new RaftNode({ id: 'app', dataDir, listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50, snapshotEvery: 50, snapshotHooks: hooks });
    const errors = [];
    node.on('error', (err) => errors.push(err));
    machine.attach(node);
    await node.start();
    await node.waitForLeader();
    for (let i = 1; i <= 120; i++) await node.propose(increment(i));
    await waitFor(() => node.status().snapshotIndex > 0, { what: 'a snapshot after the throw' });
    expect(asked.length).toBeGreaterThanOrEqual(2);
    expect(errors.map((e) => e.code)).toEqual(['ERR_CALLBACK']);
    expect(errors[0].cause.message).toBe('the disk of the app is full');
    expect(node.status().snapshotIndex).toBeGreaterThan(asked[0]);
    await node.stop();
  });
});
