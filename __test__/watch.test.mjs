// Watches that resume: watch({ fromIndex }) replays every change after an index and goes on
// live with no gap and no duplicate; an index older than the node keeps gets a resync; a
// consumer that falls behind gets ERR_WATCH_OVERFLOW and resumes from its lastIndex.
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestCluster } from 'raftline/testing';
import { clusterPerTest, withLeader } from './clusters.mjs';

const newCluster = clusterPerTest({ size: 3 });
const dirs = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A 3-node cluster (`opts` over it) once it has a leader: `{ c, leader, followers }`. */
const cluster = async (opts = {}) => withLeader(await newCluster(opts));

/** A node keeps the changes it applies from its first watch on: start one on each. */
async function keepHistory(nodes) {
  for (const node of nodes) await node.watch().return();
}

/** Items of `watch` until one satisfies `last` (included), within `timeoutMs`. */
async function collect(watch, last, timeoutMs = 10_000) {
  const items = [];
  const deadline = setTimeout(() => watch.return(), timeoutMs);
  try {
    for await (const item of watch) {
      items.push(item);
      if (last(item)) break;
    }
  } finally {
    clearTimeout(deadline);
  }
  return items;
}

const brief = (ch) => (ch.op === 'resync' ? ['resync', ch.index] : [ch.index, ch.op, ch.key, ch.value]);

describe('watch({ fromIndex })', () => {
  it('from every index of a history: exactly the changes after it, in order, once, then live', async () => {
    const { c, leader, followers } = await cluster();
    await keepHistory(c.nodes);
    // Every node keeps what it applies from here on.
    const start = await leader.set('w/start', 0);
    // Phase 1: a history of sets, deletes, batches, transactions and other prefixes.
    for (let i = 0; i < 12; i++) {
      await leader.set(`w/${i % 3}`, i);
      if (i % 4 === 0) await leader.delete(`w/${(i + 1) % 3}`);
      if (i % 5 === 0) await leader.batch([{ op: 'set', key: 'w/b', value: i }, { op: 'set', key: 'other', value: i }, { op: 'delete', key: 'w/0' }]);
      if (i % 6 === 0) await leader.txn({ then: [{ op: 'set', key: 'w/t', value: i }, { op: 'delete', key: 'w/t' }] });
    }
    const end = await leader.set('w/end', 'end');
    const isEnd = (ch) => ch.key === 'w/end';
    const all = (await collect(leader.watch({ prefix: 'w/', fromIndex: start.index - 1 }), isEnd)).map(brief);
    expect(all[0]).toEqual([start.index, 'set', 'w/start', 0]);
    expect(all.length).toBeGreaterThan(20);
    expect(all.at(-1)).toEqual([end.index, 'set', 'w/end', 'end']);
    // Phase 2: from each index, on a follower (which may not have applied it all yet).
    for (let from = start.index - 1; from < end.index; from++) {
      const node = followers[from % 2];
      const got = await collect(node.watch({ prefix: 'w/', fromIndex: from }), isEnd);
      expect(got.map(brief), `from ${from}`).toEqual(all.filter(([index]) => index > from));
    }
    // Phase 3: from the last index, the next change comes live; from a future index, nothing
    // at or before it.
    const live = leader.watch({ prefix: 'w/', fromIndex: end.index });
    const future = followers[0].watch({ prefix: 'w/', fromIndex: end.index + 1 });
    await leader.set('w/x', 1); // end.index + 1
    const next = await leader.set('w/x', 2);
    expect(brief((await live.next()).value)).toEqual([end.index + 1, 'set', 'w/x', 1]);
    expect(brief((await future.next()).value)).toEqual([next.index, 'set', 'w/x', 2]);
    await live.return();
    await future.return();
  });

  it('starting while writes stream in: no gap and no duplicate at the seam', async () => {
    const { c, leader, followers } = await cluster();
    await keepHistory(c.nodes);
    const indexOf = new Map(); // key -> index of its write
    let n = 0;
    const writer = async () => {
      while (n < 3000) {
        const key = `s/${n++}`;
        indexOf.set(key, (await leader.set(key, 1)).index);
      }
    };
    const writers = Array.from({ length: 32 }, writer);
    // Watches from wherever the writes are when they start, on every member.
    const watches = [];
    for (let i = 0; i < 12; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const from = Math.max(0, ...indexOf.values());
      const node = [leader, ...followers][i % 3];
      watches.push({ from, seen: collect(node.watch({ prefix: 's/', fromIndex: from, maxBuffered: 100_000 }), (ch) => ch.key === 's/end') });
    }
    await Promise.all(writers);
    await leader.set('s/end', 1);
    for (const { from, seen } of watches) {
      // A watch from before the first index this node keeps (0, when a slow machine starts
      // it before any write was acknowledged) begins with a resync: the keys it lists, then
      // the changes after its index. Every key is written once, so either way each key
      // written after `from` appears exactly once.
      const keys = (await seen).flatMap((ch) => (ch.op === 'resync' ? ch.entries.map(([key]) => key) : [ch.key])).filter((k) => k !== 's/end');
      const expected = [...indexOf].filter(([, index]) => index > from).map(([key]) => key);
      expect(new Set(keys).size, `from ${from}: no duplicate`).toBe(keys.length);
      expect(keys.sort(), `from ${from}: no gap`).toEqual(expected.sort());
    }
  });

  it('an index older than the node keeps starts with a resync of the prefix, then the changes after it', async () => {
    const { c, leader, followers } = await cluster();
    await keepHistory(c.nodes);
    const first = await leader.set('big/first', 0);
    // 101 entries of 1,000 changes: past the 100,000 changes a node keeps.
    for (let b = 0; b < 101; b++) {
      await leader.batch(Array.from({ length: 1000 }, (_, i) => ({ op: 'set', key: `big/${i % 500}`, value: b })));
    }
    await followers[0].get('big/0'); // linearizable: the follower has applied them all too
    const watch = followers[0].watch({ prefix: 'big/', fromIndex: first.index - 1 });
    const { value: resync } = await watch.next();
    expect(resync.op).toBe('resync');
    expect(resync.entries).toEqual(await followers[0].entries({ prefix: 'big/', consistency: 'local' }));
    expect(resync.entries).toHaveLength(501);
    const after = await leader.set('big/after', 1);
    expect((await watch.next()).value).toMatchObject({ index: after.index, key: 'big/after', op: 'set' });
    await watch.return();
  }, 60_000);

  it('a restarted member resyncs a watch from before its snapshot, and replays the changes after it', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'raftline-watch-'));
    dirs.push(dataDir);
    const { c, leader, followers } = await cluster({ dataDir, snapshotEvery: 20 });
    const early = await leader.set('d/early', 1);
    for (let i = 0; i < 60; i++) await leader.set(`d/${i % 7}`, i);
    // Restarted, the member starts from its newest snapshot: the changes before it are gone.
    const node = await c.restart(followers[0].id);
    await keepHistory([node]);
    const late = await leader.set('d/late', 1);
    await node.get('d/late'); // linearizable: it has applied up to here
    const resynced = node.watch({ prefix: 'd/', fromIndex: early.index });
    const { value: resync } = await resynced.next();
    expect(resync).toMatchObject({ op: 'resync' });
    expect(resync.entries).toEqual(await node.entries({ prefix: 'd/', consistency: 'local' }));
    await resynced.return();
    // From an index it applied since its start: the changes themselves.
    const replayed = await collect(node.watch({ prefix: 'd/', fromIndex: late.index - 1 }), (ch) => ch.key === 'd/late');
    expect(replayed.map(brief)).toEqual([[late.index, 'set', 'd/late', 1]]);
  }, 30_000);

  it('a consumer that stalls while 1M writes pass gets ERR_WATCH_OVERFLOW in bounded memory, and resumes from lastIndex without a gap', async () => {
    const { leader } = await cluster();
    const watch = leader.watch({ prefix: 'm/' });
    const rssBefore = process.memoryUsage().rss;
    // Phase 1: 1,000,000 changes (1,000 entries of 1,000) while nobody reads.
    for (let b = 0; b < 1000; b++) {
      await leader.batch(Array.from({ length: 1000 }, (_, i) => ({ op: 'set', key: `m/${i}`, value: b })));
    }
    const rssGrowth = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    console.log(`1M changes past a stalled watch: RSS grew ${rssGrowth.toFixed(0)} MiB`);
    expect(rssGrowth).toBeLessThan(400);
    // Phase 2: the consumer reads its buffered changes, then the overflow.
    let read = 0;
    let failure;
    try {
      for await (const change of watch) {
        expect(change.op).toBe('set');
        read++;
      }
    } catch (err) {
      failure = err;
    }
    expect(failure).toMatchObject({ code: 'ERR_WATCH_OVERFLOW', lastIndex: expect.any(Number) });
    expect(read).toBeLessThanOrEqual(10_000);
    // Phase 3: resuming from lastIndex: a resync (1M changes are more than a node keeps) with
    // the state the consumer missed, then live changes.
    const resumed = leader.watch({ prefix: 'm/', fromIndex: failure.lastIndex });
    const { value: resync } = await resumed.next();
    expect(resync.op).toBe('resync');
    expect(resync.entries).toHaveLength(1000);
    expect(resync.entries.every(([, v]) => v === 999)).toBe(true);
    await leader.set('m/0', 'after');
    expect((await resumed.next()).value).toMatchObject({ key: 'm/0', value: 'after', prev: 999 });
    await resumed.return();
  }, 120_000);

  it('a node keeps changes from its first watch on: from before it, a resync', async () => {
    const { leader } = await cluster();
    const before = await leader.set('h/a', 1);
    await leader.set('h/b', 2);
    const w = leader.watch({ prefix: 'h/', fromIndex: before.index - 1 });
    expect((await w.next()).value).toMatchObject({ op: 'resync', entries: [['h/a', 1], ['h/b', 2]] });
    // Kept from then on: a later watch from an index after it replays the changes.
    const next = await leader.set('h/c', 3);
    expect(brief((await w.next()).value)).toEqual([next.index, 'set', 'h/c', 3]);
    await w.return();
    const again = await collect(leader.watch({ prefix: 'h/', fromIndex: next.index - 1 }), (ch) => ch.key === 'h/c');
    expect(again.map(brief)).toEqual([[next.index, 'set', 'h/c', 3]]);
  });

  it('with recordChanges, a node keeps changes from its start: no watch needed before', async () => {
    const { leader } = await cluster({ recordChanges: true });
    const first = await leader.set('r/a', 1);
    const second = await leader.set('r/b', 2);
    const got = await collect(leader.watch({ prefix: 'r/', fromIndex: first.index - 1 }), (ch) => ch.key === 'r/b');
    expect(got.map(brief)).toEqual([
      [first.index, 'set', 'r/a', 1],
      [second.index, 'set', 'r/b', 2],
    ]);
  });

  it('refuses a bad fromIndex', async () => {
    const { leader } = await cluster();
    expect(() => leader.watch({ fromIndex: -1 })).toThrow(RangeError);
    expect(() => leader.watch({ fromIndex: -1 })).toThrow(/opts\.fromIndex/);
    expect(() => leader.watch({ fromIndex: 1.5 })).toThrow(TypeError);
    expect(() => leader.watch({ fromIndex: '3' })).toThrow(TypeError);
    await expect(createTestCluster({ size: 1, recordChanges: 'yes' })).rejects.toThrow(/options\.recordChanges must be a boolean/);
  });
});
