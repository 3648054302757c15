// Clusters in-process on ephemeral ports: election, forwarding, reads, watch, concurrency.
import { describe, it, expect } from 'vitest';
import { RaftError } from 'raftline';
import { waitFor, nextEvent } from './helpers.mjs';
import { clusterPerTest } from './clusters.mjs';

const cluster = clusterPerTest();

describe('election', () => {
  it.each([3, 5])('a %i-node cluster elects exactly one leader that all follow', async (size) => {
    const c = await cluster({ size });
    const leader = await c.waitForLeader();
    expect(c.nodes.filter((n) => n.role === 'leader').map((n) => n.id)).toEqual([leader.id]);
    for (const n of c.nodes) {
      expect(n.leaderId).toBe(leader.id);
      expect(n.term).toBe(leader.term);
    }
    await waitFor(() => leader.isLeader, { what: 'lease confirmed' });
    expect(c.nodes.filter((n) => n.isLeader)).toEqual([leader]);
  });

  it('emits leaderChange and roleChange, and onLeaderChange unsubscribes', async () => {
    const c = await cluster({ size: 3 });
    const seen = [];
    const offs = c.nodes.map((n) => n.onLeaderChange((e) => seen.push([n.id, e])));
    const roles = [];
    c.nodes.forEach((n) => n.on('roleChange', (e) => roles.push([n.id, e])));
    const leader = await c.waitForLeader();
    const old = leader.id;
    offs.forEach((off) => off());
    // Leadership moves: the roleChange listeners hear it, the unsubscribed ones do not.
    const before = seen.length;
    const target = c.nodes.find((n) => n !== leader).id;
    expect(await leader.transferLeadership(target)).toBe(target);
    await waitFor(() => roles.some(([id, e]) => id === old && e.previousRole === 'leader'), { what: 'old leader steps down' });
    expect(seen.length).toBe(before);
    const first = seen.find(([id]) => id === old)[1];
    expect(first).toMatchObject({ leaderId: old, previousLeaderId: null, isLeader: true });
    expect(typeof first.term).toBe('number');
  });
});

describe('writes and reads', () => {
  it('writes issued in one turn cross in batches: all settle, each at its own index in the order issued, and past the request queue ERR_OVERLOADED', async () => {
    // Phase 1: 5,000 writes in one turn, through a follower (they cross 64 at a time): each
    // answered at an index of its own, in the order they were issued. Phase 2: the follower's engine stalled (the leader's would lose its lead),
    // 80,000 more in one turn: the driver's queue (65,536, and up to 1,024 taken with the
    // stall) takes what it holds and the rest are refused at once with ERR_OVERLOADED;
    // every promise settles.
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    const follower = c.nodes.find((n) => n !== leader);
    const results = await Promise.all(Array.from({ length: 5000 }, (_, i) => follower.set(`b/${i % 50}`, i)));
    expect(new Set(results.map((r) => r.index)).size).toBe(5000);
    expect(results.every((r, i) => i === 0 || r.index > results[i - 1].index)).toBe(true);
    expect(await follower.get('b/49')).toBe(4999);

    await c.stall(follower.id, 2000);
    const settled = await Promise.allSettled(Array.from({ length: 80_000 }, (_, i) => follower.set('o', i, { timeoutMs: 30_000 })));
    const overloaded = settled.filter((r) => r.status === 'rejected' && r.reason.code === 'ERR_OVERLOADED').length;
    const written = settled.filter((r) => r.status === 'fulfilled').length;
    const other = settled.filter((r) => r.status === 'rejected' && r.reason.code !== 'ERR_OVERLOADED').map((r) => `${r.reason.code}: ${r.reason.message}`);
    expect([...new Set(other)]).toEqual([]);
    expect(written + overloaded).toBe(80_000);
    expect(overloaded).toBeGreaterThanOrEqual(80_000 - 65_536 - 1_024);
    expect(written).toBeGreaterThanOrEqual(65_536);
  }, 60_000);

  it('forwards follower writes; { forward: false } rejects ERR_NOT_LEADER with the leader id', async () => {
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    const follower = c.nodes.find((n) => n !== leader);
    const w = await follower.set('k', 'from follower');
    expect(w.index).toBeGreaterThan(0);
    expect(w.term).toBe(leader.term);
    expect(await leader.get('k')).toBe('from follower');
    const err = await follower.set('k', 2, { forward: false }).catch((e) => e);
    expect(err).toBeInstanceOf(RaftError);
    expect(err.code).toBe('ERR_NOT_LEADER');
    expect(err.leaderId).toBe(leader.id);
    expect(await leader.set('k', 3, { forward: false })).toMatchObject({ term: leader.term });
  });

  // Before: a follower sent a proposal over 1 MiB in chunks, which only the leader may send,
  // and the write timed out.
  it('a 2 MiB write through a follower commits when maxProposalBytes allows it', async () => {
    const c = await cluster({ size: 3, maxProposalBytes: 4 << 20 });
    const leader = await c.waitForLeader();
    const follower = c.nodes.find((n) => n !== leader);
    const value = Buffer.alloc(2 << 20, 7);
    const { index } = await follower.set('big', value);
    expect(index).toBeGreaterThan(0);
    expect((await leader.get('big')).equals(value)).toBe(true);
    await expect(follower.set('too-big', Buffer.alloc(4 << 20))).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' });
  });

  it('a linearizable read on a follower sees a write acknowledged just before elsewhere', async () => {
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    const [f1, f2] = c.nodes.filter((n) => n !== leader);
    for (let i = 0; i < 25; i++) {
      const writer = i % 2 ? f1 : leader;
      await writer.set(`lin${i}`, i);
      expect(await f2.get(`lin${i}`)).toBe(i);
    }
  });

  it('values round-trip: objects, arrays, Buffers, numbers, null', async () => {
    const c = await cluster({ size: 1 });
    const [n] = c.nodes;
    await c.waitForLeader();
    const value = { s: 'str', n: 1.5, i: -7, b: true, nil: null, arr: [1, [2, 'x']], buf: Buffer.from([0, 1, 255]), nested: { u8: new Uint8Array([9]) } };
    await n.set('v', value);
    const back = await n.get('v');
    expect(Buffer.isBuffer(back.buf)).toBe(true);
    expect(Buffer.isBuffer(back.nested.u8)).toBe(true);
    expect(back).toEqual({ ...value, nested: { u8: Buffer.from([9]) } });
    expect(n.getLocal('v')).toEqual(back);
    expect(await n.get('missing')).toBeUndefined();
    expect(await n.get('v', { consistency: 'lease' })).toEqual(back);
    expect(await n.get('v', { consistency: 'local' })).toEqual(back);
  });

  it('delete reports existence; batch applies atomically; entries are sorted and prefix-bounded', async () => {
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    const f = c.nodes.find((n) => n !== leader);
    await f.batch([
      { op: 'set', key: 'user/2', value: 'b' },
      { op: 'set', key: 'user/1', value: 'a' },
      { op: 'set', key: 'other', value: 0 },
      { op: 'delete', key: 'other' },
    ]);
    expect(await f.entries({ prefix: 'user/' })).toEqual([['user/1', 'a'], ['user/2', 'b']]);
    expect(await f.entries()).toEqual([['user/1', 'a'], ['user/2', 'b']]);
    expect((await f.delete('user/1')).existed).toBe(true);
    expect((await f.delete('user/1')).existed).toBe(false);
  });

  it('cas compares decoded values deeply and reports the current value', async () => {
    const c = await cluster({ size: 3 });
    const n = (await c.waitForLeader());
    expect(await n.cas('c', undefined, { a: 1, b: [1, 2] })).toMatchObject({ ok: true, current: { a: 1, b: [1, 2] } });
    expect(await n.cas('c', undefined, 5)).toMatchObject({ ok: false, current: { a: 1, b: [1, 2] } });
    // Same value, keys in another order: equal.
    expect(await n.cas('c', { b: [1, 2], a: 1 }, 'next')).toMatchObject({ ok: true, current: 'next' });
    expect(await n.cas('c', 'next', undefined)).toMatchObject({ ok: true });
    expect(await n.get('c')).toBeUndefined();
  });

  it('50 concurrent cas increments spread over all nodes end at the number of successes', async () => {
    const c = await cluster({ size: 3 });
    await c.waitForLeader();
    await c.nodes[0].set('counter', 0);
    const attempts = Array.from({ length: 50 }, async (_, i) => {
      const node = c.nodes[i % 3];
      const current = await node.get('counter');
      const r = await node.cas('counter', current, current + 1);
      return r.ok;
    });
    const oks = (await Promise.all(attempts)).filter(Boolean).length;
    expect(oks).toBeGreaterThan(0);
    for (const n of c.nodes) expect(await n.get('counter')).toBe(oks);
  });

  it('update retries through conflicts until every increment lands', async () => {
    const c = await cluster({ size: 3 });
    await c.waitForLeader();
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.nodes[i % 3].update('u', (prev) => (prev ?? 0) + 1, { retries: 100 })));
    expect(await c.nodes[1].get('u')).toBe(20);
  });

  it('propose delivers raw commands through apply with op raw, on every node', async () => {
    const c = await cluster({ size: 3 });
    await c.waitForLeader();
    const got = c.nodes.map((n) => nextEvent(n, 'apply', (e) => e.op === 'raw'));
    const w = await c.nodes[2].propose(Buffer.from('raw-cmd'));
    for (const e of await Promise.all(got)) {
      expect(e.index).toBe(w.index);
      expect(e.data.toString()).toBe('raw-cmd');
    }
  });

  it('apply events arrive in log order on every node with op details', async () => {
    const c = await cluster({ size: 3 });
    await c.waitForLeader();
    const logs = c.nodes.map((n) => {
      const log = [];
      n.on('apply', (e) => log.push(e));
      return log;
    });
    await c.nodes[0].set('a', 1);
    await c.nodes[1].cas('a', 1, 2);
    await c.nodes[2].delete('a');
    await waitFor(() => logs.every((l) => l.length === 3), { what: 'three applies everywhere' });
    expect(logs[0].map((e) => [e.op, e.key])).toEqual([['set', 'a'], ['cas', 'a'], ['delete', 'a']]);
    expect(logs[0][1]).toMatchObject({ ok: true, value: 2, prev: 1 });
    expect(logs[1]).toEqual(logs[0]);
    expect(logs[2]).toEqual(logs[0]);
  });
});

describe('status and events', () => {
  it('status() reports role, term, leader, indexes and members', async () => {
    const c = await cluster({ size: 3 });
    const leader = await c.waitForLeader();
    const w = await leader.set('s', 1);
    const follower = c.nodes.find((n) => n !== leader);
    await waitFor(() => follower.status().appliedIndex >= w.index, { what: 'follower applies' });
    const s = follower.status();
    expect(s).toMatchObject({ id: follower.id, role: 'follower', term: leader.term, leaderId: leader.id });
    expect(s.commitIndex).toBeGreaterThanOrEqual(w.index);
    expect(s.lastIndex).toBeGreaterThanOrEqual(s.commitIndex);
    expect(s.snapshotIndex).toBe(0);
    expect(s.members.map((m) => [m.id, m.voter])).toEqual([['n1', true], ['n2', true], ['n3', true]]);
    expect(s.members.find((m) => m.id === follower.id).url).toBe(follower.url);
    expect(leader.status().role).toBe('leader');
  });

  it('change events carry one entry per changed key, with previous values', async () => {
    const c = await cluster({ size: 3 });
    await c.waitForLeader();
    const changes = [];
    c.nodes[2].on('change', (e) => changes.push(e));
    await c.nodes[0].set('a', 1);
    await c.nodes[1].batch([{ op: 'set', key: 'a', value: 2 }, { op: 'set', key: 'b', value: 3 }]);
    await c.nodes[0].delete('a');
    await c.nodes[0].delete('a'); // deletes nothing: no change
    await waitFor(() => changes.length >= 4, { what: 'four changes' });
    expect(changes.map(({ key, op, value, prev }) => [key, op, value, prev])).toEqual([
      ['a', 'set', 1, undefined],
      ['a', 'set', 2, 1],
      ['b', 'set', 3, undefined],
      ['a', 'delete', undefined, 2],
    ]);
    expect(changes[1].index).toBe(changes[2].index); // one batch, one log entry
  });

  it('stop() on the leader hands leadership over before it resolves', async () => {
    const c = await cluster({ size: 3, timing: 'default' });
    const leader = await c.waitForLeader();
    const term = leader.term;
    await leader.stop();
    const others = c.nodes.filter((n) => n !== leader);
    // Already handed over: no election timeout had to pass.
    expect(others.some((n) => n.role === 'leader' && n.term > term)).toBe(true);
    const next = await c.waitForLeader();
    await next.set('after-stop', 1);
  });
});

describe('watch', () => {
  it('a consumer waiting in next() when its signal aborts gets the AbortError, not a plain end', async () => {
    const c = await cluster({ size: 1 });
    await c.waitForLeader();
    const ac = new AbortController();
    const watch = c.nodes[0].watch({ prefix: 'x/', signal: ac.signal });
    const waiting = watch.next().then(
      (r) => r,
      (err) => err,
    );
    ac.abort(new Error('enough'));
    const got = await waiting;
    expect(got).toMatchObject({ name: 'AbortError' });
    expect(got.cause.message).toBe('enough');
    expect(await watch.next()).toEqual({ value: undefined, done: true });
  });

  it('yields every change under the prefix in log order, and ends on abort', async () => {
    const c = await cluster({ size: 3 });
    await c.waitForLeader();
    const ac = new AbortController();
    const watched = [];
    const done = (async () => {
      for await (const ch of c.nodes[1].watch({ prefix: 'w/', signal: ac.signal })) {
        watched.push(ch);
        if (watched.length === 5) ac.abort();
      }
    })().catch((err) => err);
    await c.nodes[0].set('w/1', 1);
    await c.nodes[0].set('skip', 0);
    await c.nodes[2].batch([{ op: 'set', key: 'w/2', value: 2 }, { op: 'set', key: 'w/3', value: 3 }]);
    await c.nodes[1].set('w/1', 10);
    await c.nodes[0].delete('w/2');
    expect(await done).toMatchObject({ name: 'AbortError' });
    expect(watched.map((w) => [w.key, w.op, w.value])).toEqual([
      ['w/1', 'set', 1],
      ['w/2', 'set', 2],
      ['w/3', 'set', 3],
      ['w/1', 'set', 10],
      ['w/2', 'delete', undefined],
    ]);
    expect(watched[3].prev).toBe(1);
    const indexes = watched.map((w) => w.index);
    expect([...indexes].sort((a, b) => a - b)).toEqual(indexes);
  });

  // Before: a watch whose consumer stopped reading buffered every change without bound.
  it('a consumer that falls maxBuffered changes behind gets ERR_WATCH_OVERFLOW with the index to resume from', async () => {
    const c = await cluster({ size: 1 });
    const node = await c.waitForLeader();
    const it = node.watch({ prefix: 'o/', maxBuffered: 50 });
    let delivered = 0;
    node.on('change', (ch) => {
      if (ch.key.startsWith('o/')) delivered++;
    });
    await node.set('o/first', 0);
    const first = await it.next();
    expect(first.value).toMatchObject({ key: 'o/first', op: 'set' });
    // Now it reads nothing while 80 more changes arrive: 50 wait, the 51st overflows.
    const results = [];
    for (let i = 0; i < 80; i++) results.push(await node.set(`o/${i}`, i));
    // Watchers get each change where 'change' listeners do.
    await waitFor(() => delivered === 81, { what: 'every change delivered' });
    const err = await it.next().then(
      () => null,
      (e) => e,
    );
    expect(err).toMatchObject({ name: 'RaftError', code: 'ERR_WATCH_OVERFLOW', lastIndex: first.value.index });
    expect(await it.next()).toEqual({ value: undefined, done: true });
    // Resuming after lastIndex misses nothing: every change since is still in the state.
    const missed = results.filter((r) => r.index > err.lastIndex);
    expect(missed.length).toBe(80);
    expect(() => node.watch({ maxBuffered: 0 })).toThrow(RangeError);
    expect(() => node.watch({ maxBuffered: 'x' })).toThrow(/opts.maxBuffered/);
  });

  it('ends when the node stops', async () => {
    const c = await cluster({ size: 1 });
    await c.waitForLeader();
    const it = c.nodes[0].watch();
    const next = it.next();
    await c.nodes[0].stop();
    expect(await next).toEqual({ value: undefined, done: true });
  });
});

describe('faults', () => {
  it('an isolated leader is replaced; after heal it follows and catches up', async () => {
    const c = await cluster({ size: 3 });
    const old = await c.waitForLeader();
    await old.set('before', 1);
    c.isolate(old.id);
    const others = c.nodes.filter((n) => n !== old);
    await waitFor(() => others.some((n) => n.role === 'leader') && !old.isLeader, { what: 'new leader' });
    const newLeader = others.find((n) => n.role === 'leader');
    await newLeader.set('during', 2);
    c.heal();
    await waitFor(() => old.leaderId === newLeader.id, { what: 'old leader follows' });
    expect(await old.get('during')).toBe(2);
  });

  it('after a leader is killed the others elect a new one and keep every key', async () => {
    const c = await cluster({ size: 3 });
    const old = await c.waitForLeader();
    await old.set('x', 'kept');
    await c.kill(old.id);
    expect(old.role).toBe('stopped');
    const leader = await c.waitForLeader();
    expect(leader).not.toBe(old);
    await leader.set('y', 'new');
    for (const n of c.nodes.filter((n) => n !== old)) expect(await n.get('x')).toBe('kept');
    await expect(c.restart(old.id)).rejects.toMatchObject({ code: 'ERR_INVALID' });
  });
});
