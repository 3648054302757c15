// Revisions, paging and transactions on real clusters: getEntry(), entries({ limit, after }),
// txn().
import { describe, it, expect } from 'vitest';
import { RaftError } from 'raftline';
import { clusterPerTest, withLeader } from './clusters.mjs';

const newCluster = clusterPerTest({ size: 3 });

/** A 3-node cluster (`opts` over it) once it has a leader: `{ c, leader, followers }`. */
const cluster = async (opts = {}) => withLeader(await newCluster(opts));

describe('revisions', () => {
  it('every key carries createIndex, modIndex and version, the same on every member', async () => {
    const { c, followers } = await cluster();
    const [a, b] = followers;
    // Phase 1: created, written twice more (a set and a cas), from two members.
    const created = await a.set('cfg/db', { host: 'x' });
    const second = await b.set('cfg/db', { host: 'y' });
    const third = await a.cas('cfg/db', { host: 'y' }, { host: 'z' });
    expect(third.ok).toBe(true);
    const entry = await b.getEntry('cfg/db');
    expect(entry).toEqual({ value: { host: 'z' }, createIndex: created.index, modIndex: third.index, version: 3 });
    expect(second.index).toBeGreaterThan(created.index);
    // Every member, read locally once it applied the write, says the same.
    for (const node of c.nodes) {
      await node.get('cfg/db'); // linearizable: this member has applied the cas
      expect(await node.getEntry('cfg/db', { consistency: 'local' })).toEqual(entry);
    }
    // Phase 2: a failed cas moves nothing; a delete and a new set start over.
    expect((await a.cas('cfg/db', 'nope', 1)).ok).toBe(false);
    expect((await b.getEntry('cfg/db')).version).toBe(3);
    await a.delete('cfg/db');
    expect(await a.getEntry('cfg/db')).toBeUndefined();
    const reborn = await a.set('cfg/db', 1);
    expect(await a.getEntry('cfg/db')).toEqual({ value: 1, createIndex: reborn.index, modIndex: reborn.index, version: 1 });
  });

  it('an ephemeral key names its session', async () => {
    const { leader } = await cluster();
    const session = await leader.session({ ttlMs: 2000 });
    await leader.set('workers/1', 'up', { session });
    expect((await leader.getEntry('workers/1')).session).toBe(session.id);
    await leader.set('workers/1', 'plain');
    expect((await leader.getEntry('workers/1')).session).toBeUndefined();
    await session.close();
  });

  it('entries() pages through a prefix in key order with limit and after', async () => {
    const { leader, followers } = await cluster();
    const keys = Array.from({ length: 25 }, (_, i) => `items/${String(i).padStart(2, '0')}`);
    await leader.batch([...keys.map((key, i) => ({ op: 'set', key, value: i })), { op: 'set', key: 'other', value: 0 }]);
    const seen = [];
    let after;
    for (let page = 0; page < 10; page++) {
      const got = await followers[0].entries({ prefix: 'items/', limit: 10, after });
      seen.push(...got);
      if (got.length < 10) break;
      after = got[got.length - 1][0];
    }
    expect(seen.map(([k]) => k)).toEqual(keys);
    expect(seen.map(([, v]) => v)).toEqual(keys.map((_, i) => i));
    expect(await leader.entries({ prefix: 'items/', after: 'items/23' })).toEqual([['items/24', 24]]);
  });

  it('refuses bad paging and key arguments with errors that name them', async () => {
    const { leader } = await cluster();
    await expect(leader.entries({ limit: 0 })).rejects.toThrow(RangeError);
    await expect(leader.entries({ limit: 0 })).rejects.toThrow(/opts\.limit/);
    await expect(leader.entries({ limit: 1.5 })).rejects.toThrow(TypeError);
    await expect(leader.entries({ after: 7 })).rejects.toThrow(/opts\.after/);
    await expect(leader.getEntry('')).rejects.toThrow(RangeError);
    await expect(leader.getEntry(1)).rejects.toThrow(/key/);
  });
});

describe('txn', () => {
  it('runs then when every comparison holds, else otherwise, with each result', async () => {
    const { leader, followers } = await cluster();
    const [a] = followers;
    const first = await a.set('acct/alice', { balance: 10 });
    // Phase 1: each kind of comparison, true and false, through a follower (forwarded).
    const cases = [
      [{ key: 'acct/alice', exists: true }, true],
      [{ key: 'acct/nobody', exists: true }, false],
      [{ key: 'acct/alice', value: { balance: 10 } }, true],
      [{ key: 'acct/alice', value: { balance: 11 } }, false],
      [{ key: 'acct/alice', modIndex: first.index }, true],
      [{ key: 'acct/alice', modIndex: first.index + 1 }, false],
      [{ key: 'acct/alice', version: 1 }, true],
      [{ key: 'acct/nobody', version: 0 }, true],
      [{ key: 'acct/nobody', modIndex: 0 }, true],
    ];
    for (const [cmp, holds] of cases) {
      const r = await a.txn({ if: [cmp], then: [{ op: 'get', key: 'acct/alice' }], else: [{ op: 'get', key: 'acct/nobody' }] });
      expect(r.succeeded, JSON.stringify(cmp)).toBe(holds);
      expect(r.results).toEqual([holds ? { value: { balance: 10 }, createIndex: first.index, modIndex: first.index, version: 1 } : undefined]);
      expect(r.index).toBeGreaterThan(first.index);
    }
    // Phase 2: a transfer; the operations run in order and each answers.
    const r = await leader.txn({
      if: [{ key: 'acct/alice', version: 1 }, { key: 'acct/bob', exists: false }],
      then: [
        { op: 'set', key: 'acct/alice', value: { balance: 4 } },
        { op: 'set', key: 'acct/bob', value: { balance: 6 } },
        { op: 'delete', key: 'acct/nobody' },
        { op: 'get', key: 'acct/bob' },
      ],
    });
    expect(r.succeeded).toBe(true);
    expect(r.results).toEqual([{ existed: true }, { existed: false }, { existed: false }, { value: { balance: 6 }, createIndex: r.index, modIndex: r.index, version: 1 }]);
    // Phase 3: no branch to run: nothing happens, and it says so.
    const none = await leader.txn({ if: [{ key: 'acct/alice', version: 1 }], then: [{ op: 'delete', key: 'acct/alice' }] });
    expect(none).toMatchObject({ succeeded: false, results: [] });
    expect(await a.get('acct/alice')).toEqual({ balance: 4 });
  });

  it('is atomic: concurrent read-modify-write transactions from every member lose no update', async () => {
    const { c } = await cluster();
    await c.nodes[0].set('counter', 0);
    let conflicts = 0;
    // Each worker: read the entry, write +1 only if nobody wrote since (modIndex), else retry.
    const worker = async (node, n) => {
      for (let done = 0; done < n; ) {
        const { value, modIndex } = await node.getEntry('counter');
        const r = await node.txn({ if: [{ key: 'counter', modIndex }], then: [{ op: 'set', key: 'counter', value: value + 1 }] });
        if (r.succeeded) done++;
        else conflicts++;
      }
    };
    await Promise.all(c.nodes.flatMap((node) => [worker(node, 20), worker(node, 20)]));
    expect(await c.nodes[1].get('counter')).toBe(120);
    expect((await c.nodes[2].getEntry('counter')).version).toBe(121);
    expect(conflicts).toBeGreaterThan(0); // the comparison did refuse some
  });

  it('writes ephemeral keys in a session, and refuses a branch whose session ended', async () => {
    const { leader } = await cluster();
    const session = await leader.session({ ttlMs: 2000 });
    const r = await leader.txn({ if: [{ key: 'leader', exists: false }], then: [{ op: 'set', key: 'leader', value: 'me', session }] });
    expect(r.succeeded).toBe(true);
    await session.close();
    expect(await leader.get('leader')).toBeUndefined();
    const dead = leader.txn({ then: [{ op: 'set', key: 'x', value: 1, session }] });
    await expect(dead).rejects.toMatchObject({ code: 'ERR_SESSION_LOST' });
    expect(await leader.get('x')).toBeUndefined();
  });

  it('is one entry to watchers and apply listeners', async () => {
    const { leader } = await cluster();
    const applied = [];
    leader.on('apply', (e) => applied.push(e));
    const ac = new AbortController();
    const changes = [];
    const watching = (async () => {
      for await (const change of leader.watch({ prefix: 't/', signal: ac.signal })) {
        changes.push(change);
        if (changes.length === 2) break;
      }
    })();
    const r = await leader.txn({ then: [{ op: 'set', key: 't/a', value: 1 }, { op: 'get', key: 't/a' }, { op: 'delete', key: 't/a' }] });
    await watching;
    expect(changes.map((ch) => [ch.index, ch.op, ch.key])).toEqual([
      [r.index, 'set', 't/a'],
      [r.index, 'delete', 't/a'],
    ]);
    const mine = applied.find((e) => e.index === r.index);
    expect(mine).toMatchObject({ op: 'txn', ops: [{ op: 'set', key: 't/a', value: 1 }, { op: 'delete', key: 't/a' }] });
  });

  it('refuses bad transactions before anything is proposed', async () => {
    const { leader } = await cluster();
    const cyclic = {};
    cyclic.self = cyclic;
    const bad = [
      [null, TypeError, /^t must be an object/],
      [{ when: [] }, TypeError, /unknown field "when"/],
      [{ if: {} }, TypeError, /t\.if must be an array/],
      [{ if: [{ key: 'a' }] }, TypeError, /t\.if\[0\] must compare exactly one of/],
      [{ if: [{ key: 'a', exists: true, version: 1 }] }, TypeError, /exists and version/],
      [{ if: [{ key: 'a', version: -1 }] }, RangeError, /t\.if\[0\]\.version/],
      [{ if: [{ key: 'a', modIndex: 1.5 }] }, TypeError, /t\.if\[0\]\.modIndex/],
      [{ if: [{ key: 'a', exists: 'yes' }] }, TypeError, /t\.if\[0\]\.exists/],
      [{ then: [{ op: 'put', key: 'a', value: 1 }] }, TypeError, /t\.then\[0\]\.op must be 'set', 'delete' or 'get'/],
      [{ else: [{ op: 'set', key: 'a' }] }, TypeError, /t\.else\[0\]\.value/],
      [{ then: [{ op: 'set', key: 'a', value: cyclic }] }, TypeError, /t\.then\[0\]\.value/],
      [{ if: [{ key: 'a', value: cyclic }] }, TypeError, /t\.if\[0\]\.value/],
      [{ then: [{ op: 'get', key: '' }] }, RangeError, /t\.then\[0\]\.key/],
      [{ then: [{ op: 'set', key: 'a', value: 1, session: 'abc' }] }, TypeError, /t\.then\[0\]\.session must be a Session/],
      [{ then: Array.from({ length: 129 }, (_, i) => ({ op: 'get', key: `k${i}` })) }, RangeError, /at most 128/],
    ];
    for (const [i, [t, type, message]] of bad.entries()) {
      await expect(leader.txn(t), `case ${i}`).rejects.toThrow(type);
      await expect(leader.txn(t), `case ${i}`).rejects.toThrow(message);
    }
    // At the bound exactly, it runs; and nothing of the refused ones was written.
    const full = Array.from({ length: 128 }, (_, i) => ({ op: 'set', key: `k${i}`, value: i }));
    expect((await leader.txn({ then: full })).results).toHaveLength(128);
    expect(await leader.get('a')).toBeUndefined();
    await c0Stopped(leader);
  });
});

/** A stopped node's txn rejects ERR_STOPPED. */
async function c0Stopped(node) {
  await node.stop();
  await expect(node.txn({ then: [] })).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  await expect(node.getEntry('a')).rejects.toBeInstanceOf(RaftError);
}
