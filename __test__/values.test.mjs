// Values as users write them: keys that are special to JavaScript objects stay plain data,
// through writes, events, reads and restarts.
import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestCluster } from 'raftline/testing';
import { waitFor } from './helpers.mjs';

const cleanup = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('values', () => {
  it('a __proto__ key round-trips as data through change events, reads and a restart', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'raftline-values-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const c = await createTestCluster({ size: 3, dataDir: dir });
    cleanup.push(() => c.close());
    const leader = await c.waitForLeader();
    const changes = [];
    for (const n of c.nodes) n.on('change', (e) => changes.push([n.id, e]));
    // What JSON.parse gives for a request body: an own property named __proto__.
    const value = JSON.parse('{"__proto__": {"isAdmin": true}, "name": "x"}');
    await leader.set('user', value);
    await waitFor(() => changes.length >= 3, { what: 'every node reports the change' });
    for (const [, e] of changes) {
      expect(Object.getOwnPropertyNames(e.value).sort()).toEqual(['__proto__', 'name']);
      expect(Object.getPrototypeOf(e.value)).toBe(Object.prototype);
    }
    expect({}.isAdmin).toBeUndefined();
    const read = await leader.get('user');
    expect(JSON.stringify(read)).toBe(JSON.stringify(value));
    expect(read.isAdmin).toBeUndefined();
    // cas compares it as data too.
    expect((await leader.cas('user', value, 'replaced')).ok).toBe(true);
    const last = await leader.set('user', value);
    // A restart replays the log through the same decoding: no poison pill. (It must reach the
    // last write: 'replaced' sits between the first and the last.)
    const follower = c.nodes.find((n) => n !== leader);
    const again = await c.restart(follower.id);
    await waitFor(() => again.status().appliedIndex >= last.index, { what: 'the restarted node applies the log' });
    expect(JSON.stringify(again.getLocal('user'))).toBe(JSON.stringify(value));
  });
});
