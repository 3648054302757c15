// Membership changes through joint-consensus conf changes: grow a durable cluster from 3 to
// 5 members and shrink it back to 3 (removing the leader too) while a writer keeps writing.
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestCluster } from 'raftline/testing';
import { RaftNode } from 'raftline';
import { waitFor } from './helpers.mjs';

const dirs = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('membership', () => {
  it('grows 3 -> 5 (one learner promoted) and shrinks back to 3, removing the leader, without losing a write', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'raftline-members-'));
    dirs.push(dataDir);
    const c = await createTestCluster({ size: 3, dataDir });
    const extra = [];
    try {
      await c.waitForLeader();
      let members = [...c.nodes];
      const leaderOf = () => members.find((n) => n.role === 'leader');
      const change = async (what) => {
        // Through the current leader; a change still pending there is retried.
        for (;;) {
          const leader = leaderOf() ?? (await waitFor(leaderOf, { what: 'a leader' }));
          try {
            return await what(leader);
          } catch (err) {
            if (!['ERR_CONF_CHANGE_IN_PROGRESS', 'ERR_NOT_LEADER', 'ERR_NO_LEADER', 'ERR_TIMEOUT'].includes(err.code)) throw err;
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      };
      const joiner = async (id) => {
        const peers = Object.fromEntries(members.map((n) => [n.id, n.url]));
        const node = new RaftNode({ id, join: true, peers, secret: c.secret, dataDir: path.join(dataDir, id), listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50 });
        await node.start();
        extra.push(node);
        return node;
      };

      const acked = new Map();
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop; i++) {
          const running = members.filter((n) => n.role !== 'stopped');
          if (running.length === 0) break; // the cluster is gone (the test failed)
          try {
            await running[i % running.length].set(`w${i}`, i, { timeoutMs: 1000 });
            acked.set(`w${i}`, i);
          } catch {
            // outcome unknown: not acknowledged
            // yield to timers: a failing loop must never starve the event loop
            await new Promise((r) => setImmediate(r));
          }
        }
      })();

      const seen = [];
      c.nodes[0].on('membershipChange', (e) => seen.push(e.members.map((m) => `${m.id}:${m.voter ? 'v' : 'l'}`).sort().join(',')));

      // n4 joins as a learner, catches up, and is promoted.
      const n4 = await joiner('n4');
      await change((l) => l.addMember('n4', n4.url, { learner: true }));
      members.push(n4);
      await waitFor(() => n4.status().appliedIndex > 0 && n4.role === 'learner', { what: 'n4 is a learner' });
      await waitFor(() => n4.status().appliedIndex >= leaderOf().status().commitIndex - 5, { what: 'n4 catches up' });
      await change((l) => l.promoteMember('n4'));
      await waitFor(() => n4.role === 'follower' || n4.role === 'leader', { what: 'n4 votes' });
      await expect(c.nodes[0].promoteMember('nobody')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_MEMBER' });

      // n5 joins as a voter.
      const n5 = await joiner('n5');
      await change((l) => l.addMember('n5', n5.url));
      members.push(n5);
      await waitFor(() => leaderOf() && leaderOf().members().filter((m) => m.voter).length === 5, { what: 'five voters' });

      // Shrink: remove the current leader (it hands over first), then one more original.
      const oldLeader = leaderOf();
      await oldLeader.removeMember(oldLeader.id);
      members = members.filter((n) => n !== oldLeader);
      await oldLeader.stop({ transferLeadership: false });
      const other = members.find((n) => c.nodes.includes(n));
      await change((l) => l.removeMember(other.id));
      members = members.filter((n) => n !== other);
      await other.stop({ transferLeadership: false });

      await new Promise((r) => setTimeout(r, 200));
      stop = true;
      await writer;
      const leader = await waitFor(leaderOf, { what: 'a leader of the final three' });
      expect(leader.members().map((m) => m.id).sort()).toEqual(members.map((n) => n.id).sort());
      const marker = await leader.set('final', true);
      for (const n of members) {
        await waitFor(() => n.status().appliedIndex >= marker.index, { what: `${n.id} applies everything` });
        const missing = [...acked].filter(([k, v]) => n.getLocal(k) !== v);
        expect(missing).toEqual([]);
      }
      expect(acked.size).toBeGreaterThan(50);
      expect(seen.length).toBeGreaterThanOrEqual(3);
    } finally {
      await Promise.all(extra.map((n) => n.stop({ transferLeadership: false })));
      await c.close();
    }
  }, 30_000);

  it('one change at a time; unknown and duplicate members are refused with their codes', async () => {
    const c = await createTestCluster({ size: 3 });
    try {
      const leader = await c.waitForLeader();
      // Cut off, the leader cannot commit a first change: a second finds it pending.
      c.isolate(leader.id);
      const first = leader.addMember('x1', 'ws://127.0.0.1:9', { learner: true, timeoutMs: 300 }).catch((e) => e);
      await new Promise((r) => setTimeout(r, 5));
      await expect(leader.addMember('x2', 'ws://127.0.0.1:9', { learner: true })).rejects.toMatchObject({ code: 'ERR_CONF_CHANGE_IN_PROGRESS' });
      c.heal();
      const outcome = await first; // committed after all, or unknown: never a wrong answer
      expect(outcome === undefined || outcome.code === 'ERR_TIMEOUT').toBe(true);
      const now = await c.waitForLeader();
      if (now.members().some((m) => m.id === 'x1')) await now.removeMember('x1');
      await expect(now.removeMember('nobody')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_MEMBER' });
      await expect(now.addMember('n2', 'ws://127.0.0.1:9')).rejects.toMatchObject({ code: 'ERR_INVALID' });
      await expect(now.promoteMember('n2')).rejects.toMatchObject({ code: 'ERR_INVALID' });
      await expect(now.addMember('bad id', 'ws://h:1')).rejects.toThrow(TypeError);
      await waitFor(() => now.members().map((m) => m.id).join() === 'n1,n2,n3', { what: 'back to three members' });
    } finally {
      await c.close();
    }
  });

  it('members show their URLs; a removed member rejects work at once with ERR_REMOVED', async () => {
    const c = await createTestCluster({ size: 3 });
    let n4;
    try {
      const leader = await c.waitForLeader();
      const peers = Object.fromEntries(c.nodes.map((n) => [n.id, n.url]));
      n4 = new RaftNode({ id: 'n4', join: true, peers, secret: c.secret, listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50 });
      await n4.start();
      await leader.addMember('n4', n4.url, { learner: true });
      const url = (node, id) => node.members().find((m) => m.id === id)?.url;
      expect(url(leader, 'n4')).toBe(n4.url);
      await waitFor(() => url(c.nodes.find((n) => n !== leader), 'n4') === n4.url, { what: 'followers know the URL' });
      await waitFor(() => n4.role === 'learner', { what: 'n4 hears it was added' });
      await leader.removeMember('n4');
      // n4 learns its removal from the entry, or (had it missed it) from the leader, which
      // refuses a removed member's traffic with a reason that says so.
      const code = () => n4.set('k', 1, { timeoutMs: 1000 }).then(() => 'written', (e) => e.code);
      await waitFor(async () => (await code()) === 'ERR_REMOVED', { what: 'n4 knows it was removed' });
      const t0 = Date.now();
      await expect(n4.set('k', 1)).rejects.toMatchObject({ code: 'ERR_REMOVED' });
      await expect(n4.get('k')).rejects.toMatchObject({ code: 'ERR_REMOVED' });
      expect(Date.now() - t0).toBeLessThan(500);
    } finally {
      if (n4) await n4.stop({ transferLeadership: false });
      await c.close();
    }
  });

  it('a member that joins after the log was compacted catches up by snapshot', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'raftline-join-snap-'));
    dirs.push(dataDir);
    const c = await createTestCluster({ size: 3, dataDir, snapshotEvery: 50 });
    let n4;
    try {
      const leader = await c.waitForLeader();
      for (let i = 0; i < 300; i += 30) await Promise.all(Array.from({ length: 30 }, (_, j) => leader.set(`k${i + j}`, i + j)));
      await waitFor(() => leader.status().snapshotIndex > 100, { what: 'compaction' });
      const peers = Object.fromEntries(c.nodes.map((n) => [n.id, n.url]));
      n4 = new RaftNode({ id: 'n4', join: true, peers, secret: c.secret, dataDir: path.join(dataDir, 'n4'), listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50 });
      const installed = new Promise((resolve) => n4.once('snapshot', resolve));
      await n4.start();
      expect(n4.role).not.toBe('leader');
      await leader.addMember('n4', n4.url);
      const snap = await installed;
      expect(snap.index).toBeGreaterThan(100);
      await waitFor(() => n4.getLocal('k299') === 299, { what: 'n4 caught up' });
      expect(n4.getLocal('k0')).toBe(0);
      expect(n4.members().length).toBe(4);
    } finally {
      if (n4) await n4.stop({ transferLeadership: false });
      await c.close();
    }
  });
});
