// Exactly-once writes: the idempotencyKey option on every write, retried on other members,
// across a leader kill and past the retention. (Through raftline/express forwarding: see
// express.test.mjs.)
import { describe, it, expect } from 'vitest';
import { clusterPerTest, withLeader } from './clusters.mjs';

const newCluster = clusterPerTest({ size: 3 });

/** A 3-node cluster (`opts` over it) once it has a leader: `{ c, leader, followers }`. */
const cluster = async (opts = {}) => withLeader(await newCluster(opts));

describe('idempotencyKey', () => {
  it('every kind of write applies once; a retry on any member answers the first result', async () => {
    const { leader, followers } = await cluster();
    const [a, b] = followers;
    const session = await a.session({ ttlMs: 5000 });
    // (kind, write from `node` with `key`) -> the first answer and the retry's must match.
    const writes = [
      ['set', (node, key) => node.set('s', 1, { idempotencyKey: key })],
      ['incr', (node, key) => node.incr('n', 5, { idempotencyKey: key })],
      ['cas', (node, key) => node.cas('c', undefined, 'first', { idempotencyKey: key })],
      ['delete', (node, key) => node.delete('s', { idempotencyKey: key })],
      ['batch', (node, key) => node.batch([{ op: 'set', key: 'b', value: 1 }], { idempotencyKey: key })],
      ['txn', (node, key) => node.txn({ if: [{ key: 't', exists: false }], then: [{ op: 'set', key: 't', value: 1 }] }, { idempotencyKey: key })],
      ['propose', (node, key) => node.propose(Buffer.from('raw'), { idempotencyKey: key })],
    ];
    const raw = [];
    leader.on('apply', (e) => e.op === 'raw' && raw.push(e.index));
    for (const [kind, write] of writes) {
      const first = await write(a, `req-${kind}`);
      expect(first.duplicate, kind).toBeUndefined();
      // The retry comes through another member, and again through the leader.
      for (const node of [b, leader]) {
        const retry = await write(node, `req-${kind}`);
        const { duplicate, ...rest } = retry;
        expect(duplicate, kind).toBe(true);
        expect(rest, kind).toEqual(first);
      }
    }
    // Ephemeral writes too (from the session's own node).
    const eph = await a.set('e', 1, { session, idempotencyKey: 'req-eph' });
    expect(await a.set('e', 1, { session, idempotencyKey: 'req-eph' })).toEqual({ ...eph, duplicate: true });
    // Applied once each: the counter, the cas (a second cas from absent would have failed
    // and said so), the txn's branch, the raw entry.
    expect(await b.get('n')).toBe(5);
    expect((await b.getEntry('c')).version).toBe(1);
    expect((await b.getEntry('t')).version).toBe(1);
    await expect.poll(() => raw.length).toBe(1);
    await session.close();
  });

  it('writes retried on a survivor after their leader was killed apply exactly once', async () => {
    const { c, leader, followers } = await cluster({ timing: 'fast' });
    const [a] = followers;
    // Phase 1: 64 clients send keyed increments to the leader, each a new order; the leader
    // is killed while they run. A client whose write fails retries it on a survivor, with
    // the same key, until it is answered: as a client of a crashed replica would.
    const total = 3000;
    let next = 0;
    let retried = 0;
    let duplicates = 0;
    let current = leader; // where new orders go: the survivor once the leader failed one
    const client = async () => {
      while (next < total) {
        const key = `order-${next++}`;
        if (next === 1000) void c.kill(leader.id);
        let target = current;
        for (;;) {
          try {
            const r = await target.incr('orders', 1, { idempotencyKey: key, timeoutMs: 3000 });
            if (r.duplicate) duplicates++;
            break;
          } catch (err) {
            if (!['ERR_STOPPED', 'ERR_TIMEOUT', 'ERR_NO_LEADER', 'ERR_NOT_LEADER'].includes(err.code)) throw err;
            if (target === leader) retried++;
            target = current = a;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, client));
    // Phase 2: one increment per order on every survivor, though some orders were sent twice
    // after they had applied (a retry without the key would have counted them twice).
    for (const node of c.nodes.filter((n) => n.role !== 'stopped')) {
      expect(await node.get('orders')).toBe(total);
    }
    expect(retried).toBeGreaterThan(0);
    console.log(`leader kill: ${retried} of ${total} orders retried on a survivor, ${duplicates} of them had applied (answered duplicate)`);
  });

  it('past the retention (100,000 keyed writes) a key applies again, the same on every member', async () => {
    const { c, leader } = await cluster();
    await leader.incr('n', 1, { idempotencyKey: 'k-0' });
    expect((await leader.incr('n', 1, { idempotencyKey: 'k-0' })).duplicate).toBe(true);
    // 100,000 more keyed writes push k-0 out (256 in flight).
    let next = 1;
    const worker = async () => {
      while (next <= 100_000) {
        const i = next++;
        await leader.set('filler', i, { idempotencyKey: `k-${i}` });
      }
    };
    await Promise.all(Array.from({ length: 256 }, worker));
    const again = await c.nodes[1].incr('n', 1, { idempotencyKey: 'k-0' });
    expect(again.duplicate).toBeUndefined();
    // k-1 was the oldest kept and is gone now too (k-0's new record pushed it out); k-2 stays.
    expect((await c.nodes[2].incr('n', 1, { idempotencyKey: 'k-2' })).duplicate).toBe(true);
    for (const node of c.nodes) expect(await node.get('n')).toBe(2);
  }, 60_000);

  it('refuses bad keys, and update() refuses one', async () => {
    const { leader } = await cluster();
    await expect(leader.set('a', 1, { idempotencyKey: '' })).rejects.toThrow(RangeError);
    await expect(leader.set('a', 1, { idempotencyKey: 'x'.repeat(257) })).rejects.toThrow(/opts\.idempotencyKey must be 1-256 bytes/);
    await expect(leader.set('a', 1, { idempotencyKey: 7 })).rejects.toThrow(TypeError);
    await expect(leader.set('a', 1, { idempotencyKey: '\ud800' })).rejects.toThrow(/lone surrogate/);
    await expect(leader.update('a', () => 1, { idempotencyKey: 'u' })).rejects.toThrow(/does not fit update/);
    // A 256-byte key (multi-byte characters counted in bytes) is fine.
    const max = 'é'.repeat(128);
    expect((await leader.set('a', 1, { idempotencyKey: max })).duplicate).toBeUndefined();
    expect((await leader.set('a', 2, { idempotencyKey: max })).duplicate).toBe(true);
    expect(await leader.get('a')).toBe(1);
  });
});
