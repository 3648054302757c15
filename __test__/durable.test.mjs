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
