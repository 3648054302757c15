// Operating a cluster: larger clusters, leadership transfer time, rolling restarts.
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestCluster } from 'raftline/testing';

const dirs = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

describe('cluster sizes', () => {
  it.each([7, 20])('a %i-member cluster elects exactly one leader and replicates 1,000 writes', async (size) => {
    const c = await createTestCluster({ size, timing: 'default' });
    try {
      const leader = await c.waitForLeader({ timeoutMs: 20_000 });
      expect(c.nodes.filter((n) => n.role === 'leader')).toEqual([leader]);
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async (_, w) => {
          while (next < 1000) {
            const i = next++;
            await c.nodes[(w + i) % size].set(`k${i}`, i);
          }
        }),
      );
      const last = await leader.set('last', true);
      for (const n of c.nodes) {
        const deadline = Date.now() + 10_000;
        while (n.status().appliedIndex < last.index && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        expect(n.getLocal('k999')).toBe(999);
        expect(n.getLocal('k0')).toBe(0);
      }
    } finally {
      await c.close();
    }
  }, 60_000);
});

describe('leadership transfer', () => {
  it('transferLeadership completes, and a write after it succeeds, within 150 ms (fast timing)', async () => {
    const c = await createTestCluster({ size: 3 });
    try {
      const times = [];
      for (let i = 0; i < 7; i++) {
        const leader = await c.waitForLeader();
        await leader.set('warm', i);
        const t0 = performance.now();
        const to = await leader.transferLeadership();
        await c.node(to).set('after-transfer', i, { forward: false });
        times.push(performance.now() - t0);
      }
      console.log(`transferLeadership + first write: median ${median(times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`);
      expect(Math.max(...times)).toBeLessThan(150);
    } finally {
      await c.close();
    }
  });
});

describe('rolling restart', () => {
  it('stopping and restarting every member in turn stalls writes for under 500 ms', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'raftline-rolling-'));
    dirs.push(dataDir);
    const c = await createTestCluster({ size: 3, dataDir, timing: 'default' });
    try {
      await c.waitForLeader();
      let stop = false;
      let lastAck = performance.now();
      let maxGap = 0;
      let acked = 0;
      const writer = (async () => {
        for (let i = 0; !stop; i++) {
          // A client behind a load balancer: any running member, the next one on failure.
          const running = c.nodes.filter((n) => n.role !== 'stopped');
          if (running.length === 0) break; // the cluster is gone (the test failed)
          const node = running[i % running.length];
          try {
            await node.set(`r${i}`, i, { timeoutMs: 1000 });
            const now = performance.now();
            maxGap = Math.max(maxGap, now - lastAck);
            lastAck = now;
            acked++;
          } catch {
            // outcome unknown or node stopping: the next iteration tries another member
            // yield to timers: a failing loop must never starve the event loop
            await new Promise((r) => setImmediate(r));
          }
        }
      })();
      for (const id of ['n1', 'n2', 'n3']) {
        await new Promise((r) => setTimeout(r, 150)); // steady state between restarts
        await c.node(id).stop(); // hands leadership over first when it leads
        const back = await c.restart(id);
        await back.waitForLeader();
      }
      await new Promise((r) => setTimeout(r, 150));
      stop = true;
      await writer;
      console.log(`rolling restart: ${acked} writes acknowledged, longest gap between acks ${maxGap.toFixed(1)} ms`);
      expect(acked).toBeGreaterThan(100);
      expect(maxGap).toBeLessThan(500);
    } finally {
      await c.close();
    }
  }, 30_000);
});

describe('peer health', () => {
  it('isolating a follower turns it unhealthy on the leader and healing turns it healthy, with events in that order', async () => {
    const c = await createTestCluster({ size: 3 });
    try {
      const leader = await c.waitForLeader();
      const follower = c.nodes.find((n) => n !== leader);
      const events = [];
      leader.on('peerHealth', (e) => e.id === follower.id && events.push(e.health));
      const healthOf = () => leader.members().find((m) => m.id === follower.id);
      const until = async (check, what) => {
        const deadline = Date.now() + 10_000;
        while (!check()) {
          if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      await until(() => healthOf().health === 'healthy', 'healthy at first');
      expect(healthOf().matchIndex).toBeGreaterThan(0);
      c.isolate(follower.id);
      await until(() => healthOf().health === 'unhealthy', 'unhealthy when isolated');
      expect(healthOf().lastContactMs).toBeGreaterThanOrEqual(50);
      c.heal();
      await until(() => healthOf().health === 'healthy', 'healthy when healed');
      // members() reads the engine's state at once; a 'peerHealth' event crosses to this
      // thread through a queue, so the 'healthy' event may land a turn after the state says so.
      await until(() => events.includes('unhealthy') && events.slice(events.indexOf('unhealthy')).includes('healthy'), "'healthy' event after 'unhealthy'");
      expect(events.indexOf('unhealthy')).toBeGreaterThanOrEqual(0);
      expect(events.lastIndexOf('healthy')).toBeGreaterThan(events.indexOf('unhealthy'));
      expect(follower.members().every((m) => m.health === 'unknown' && m.matchIndex === null)).toBe(true);
    } finally {
      await c.close();
    }
  });
});
