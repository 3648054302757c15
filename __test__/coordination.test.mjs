// Sessions and locks: node.session(), lock(), tryLock(), withLock() on real clusters.
import { describe, it, expect } from 'vitest';
import { getEventListeners, setMaxListeners } from 'node:events';
import { RaftError } from 'raftline';
import { waitFor } from './helpers.mjs';
import { clusterPerTest } from './clusters.mjs';

const newCluster = clusterPerTest({ size: 3 });

async function cluster(opts = {}) {
  const c = await newCluster(opts);
  await c.waitForLeader();
  return c;
}

/** Resolves with the reason when `signal` aborts. */
function aborted(signal) {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener('abort', () => resolve(signal.reason), { once: true });
  });
}

describe('sessions', () => {
  it('lives while its node keeps it, and close() ends it at once with its signal first', async () => {
    const c = await cluster();
    const [a] = c.nodes;
    const session = await a.session({ ttlMs: 500 });
    expect(session.id).toMatch(/^[0-9]+$/);
    expect(session.ttlMs).toBe(500);
    expect(session.alive).toBe(true);
    // Kept alive across several TTLs by renewals.
    const until = Date.now() + 1500;
    await waitFor(() => Date.now() >= until, { what: 'three TTLs' });
    expect(session.alive).toBe(true);
    await session.close();
    expect(session.alive).toBe(false);
    expect(session.signal.reason).toBeInstanceOf(RaftError);
    expect(session.signal.reason.code).toBe('ERR_SESSION_LOST');
    await session.close(); // idempotent
  });

  it("a stopped node's sessions end on the holder at once and expire in the cluster", async () => {
    const c = await cluster();
    const holder = c.nodes[0];
    const other = c.nodes[1];
    const session = await holder.session({ ttlMs: 400 });
    const lock = await holder.lock('job', { session });
    const lost = aborted(session.signal);
    await c.kill(holder.id);
    expect((await lost).code).toBe('ERR_SESSION_LOST');
    expect(lock.signal.aborted).toBe(true);
    // The cluster expires it (TTL + an election at most): the lock is free again.
    const next = await other.lock('job', { timeoutMs: 5000 });
    expect(next.fence).toBeGreaterThan(lock.fence);
    await next.release();
  });

  it("a dead holder's session ends within its TTL and an election, though the leader dies too", async () => {
    const c = await cluster({ size: 5, timing: 'default' }); // election timeout 150-300 ms
    const leader = await c.waitForLeader();
    const [holder, waiter] = c.nodes.filter((n) => n !== leader);
    const ttlMs = 2000;
    const held = await holder.lock('job', { ttlMs });
    const waiting = waiter.lock('job');
    // Phase 1: the holder dies; half a TTL later, so does the leader.
    const died = Date.now();
    await c.kill(holder.id);
    await new Promise((resolve) => setTimeout(resolve, ttlMs / 2)); // the scenario's own timing
    await c.kill(leader.id);
    // Phase 2: the waiter is granted the lock within the TTL and one election (and the commit)
    // of the holder's death, not a TTL after the new leader took over (that would be 3.1 s on).
    const next = await waiting;
    const took = Date.now() - died;
    expect(next.fence).toBeGreaterThan(held.fence);
    expect(took).toBeLessThan(ttlMs + 300 + 400);
    await next.release();
  });

  it('refuses bad options with errors naming them', async () => {
    const c = await cluster();
    const [a] = c.nodes;
    await expect(a.session({ ttlMs: 5 })).rejects.toThrow(RangeError);
    await expect(a.session({ ttlMs: 5 })).rejects.toThrow(/opts\.ttlMs/);
    await expect(a.session({ ttlMs: 2 * 24 * 3600 * 1000 })).rejects.toThrow(RangeError);
    await expect(a.session({ ttlMs: 1.5 })).rejects.toThrow(TypeError);
    await expect(a.session({ ttlMs: '100' })).rejects.toThrow(TypeError);
    await expect(a.session({ signal: 'no' })).rejects.toThrow(/opts\.signal/);
    await expect(a.session({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('an AbortSignal given to session() closes it', async () => {
    const c = await cluster();
    const controller = new AbortController();
    const session = await c.nodes[0].session({ ttlMs: 1000, signal: controller.signal });
    controller.abort();
    await waitFor(() => !session.alive, { what: 'session closed' });
    // Closed in the cluster too: its lock, taken meanwhile by nobody, can be taken at once.
    const lock = await c.nodes[1].tryLock('x');
    expect(lock).not.toBeNull();
    await lock.release();
  });
});

describe('ephemeral keys', () => {
  it("are deleted in the entry that ends their session, and watchers see it", async () => {
    const c = await cluster({ timing: 'default' });
    const leader = await c.waitForLeader();
    const [worker, observer] = c.nodes.filter((n) => n !== leader);
    const session = await worker.session({ ttlMs: 600 });
    const seen = [];
    const watching = (async () => {
      for await (const change of observer.watch({ prefix: 'workers/' })) {
        seen.push([change.op, change.key]);
        if (seen.length === 6) return;
      }
    })();
    // Phase 1: keys of the session by set, cas and batch; one made ordinary again.
    await worker.set('workers/a', { at: 1 }, { session });
    const swapped = await worker.cas('workers/b', undefined, { at: 2 }, { session });
    expect(swapped.ok).toBe(true);
    await worker.batch([{ op: 'set', key: 'workers/c', value: 3, session }, { op: 'set', key: 'config/x', value: 1 }]);
    await worker.set('workers/c', 'kept'); // written outside the session: ordinary now
    // Phase 2: the worker's engine stalls past the TTL: the session expires, its keys go.
    await c.stall(worker.id, 1500);
    await watching;
    // Four sets (c twice), then the expiry's two deletes.
    expect(seen.slice(0, 4).map(([op]) => op)).toEqual(['set', 'set', 'set', 'set']);
    expect(seen.slice(4).map(([op]) => op)).toEqual(['delete', 'delete']);
    expect(seen.slice(4).map(([, key]) => key).sort()).toEqual(['workers/a', 'workers/b']);
    expect(await observer.get('workers/a')).toBeUndefined();
    expect(await observer.get('workers/c')).toBe('kept');
    expect(await observer.get('config/x')).toBe(1);
    // Writing in a session that ended writes nothing.
    await expect(worker.set('workers/d', 1, { session })).rejects.toMatchObject({ code: 'ERR_SESSION_LOST' });
    await expect(worker.set('workers/d', 1, { session: 'x' })).rejects.toThrow(/opts\.session/);
  });

  it('close() deletes them at once; a session of another node is refused', async () => {
    const c = await cluster();
    const [a, b] = c.nodes;
    const session = await a.session();
    await a.set('presence/a', true, { session });
    await expect(b.set('presence/b', true, { session })).rejects.toMatchObject({ code: 'ERR_INVALID' });
    await expect(b.lock('l', { session })).rejects.toMatchObject({ code: 'ERR_INVALID' });
    await session.close();
    expect(await b.get('presence/a')).toBeUndefined();
  });
});

describe('locks', () => {
  it('serves waiters in order with strictly increasing fences', async () => {
    const c = await cluster();
    const [a, b, d] = c.nodes;
    const first = await a.lock('tenant-1');
    const order = [];
    const second = b.lock('tenant-1').then((l) => (order.push('b'), l));
    await new Promise((r) => setTimeout(r, 50)); // b's request reaches the log before d's
    const third = d.lock('tenant-1').then((l) => (order.push('d'), l));
    expect(await a.tryLock('tenant-1')).toBeNull();
    await first.release();
    expect(first.signal.aborted).toBe(true);
    const l2 = await second;
    expect(l2.fence).toBeGreaterThan(first.fence);
    await l2.release();
    const l3 = await third;
    expect(l3.fence).toBeGreaterThan(l2.fence);
    await l3.release();
    expect(order).toEqual(['b', 'd']);
  });

  it("a holder's expiry grants the next waiter, whose fence is higher", async () => {
    const c = await cluster({ timing: 'default' });
    // The holder is a follower here; a paused leader is the next test's case.
    const leader = await c.waitForLeader();
    const [a, b] = c.nodes.filter((n) => n !== leader);
    const session = await a.session({ ttlMs: 600 });
    const held = await a.lock('job', { session });
    const order = [];
    held.signal.addEventListener('abort', () => order.push('a lost'), { once: true });
    const waiting = b.lock('job').then((l) => (order.push('b granted'), l));
    // The holder's engine is paused past the TTL (it cannot even report the loss): its
    // signal still aborts before anyone else holds the lock.
    const lost = aborted(held.signal);
    await c.stall(a.id, 1500);
    const next = await waiting;
    expect(order).toEqual(['a lost', 'b granted']);
    expect((await lost).code).toBe('ERR_SESSION_LOST');
    expect(next.fence).toBeGreaterThan(held.fence);
    // b applied the expiry that granted it the lock.
    expect(b.metricsJson()).toMatchObject({ locksHeld: 1, lockWaiters: 0 });
    expect(b.metricsJson().sessionsExpired).toBeGreaterThanOrEqual(1);
    await next.release();
    await waitFor(() => b.metricsJson().locksHeld === 0 && b.metricsJson().sessions === 0, { what: 'nothing left' });
  });

  it('a paused leader holding a lock loses it, and waiters granted meanwhile get higher fences', async () => {
    const c = await cluster({ timing: 'default' });
    const leader = await c.waitForLeader();
    const [b, d] = c.nodes.filter((n) => n !== leader);
    const held = await leader.lock('job', { ttlMs: 600 });
    const waiters = [b.lock('job'), d.lock('job')];
    const lost = aborted(held.signal);
    // Paused past its TTL, the leader is replaced; waiters' requests in flight are asked again.
    await c.stall(leader.id, 1500);
    expect((await lost).code).toBe('ERR_SESSION_LOST');
    const first = await Promise.race(waiters);
    expect(first.fence).toBeGreaterThan(held.fence);
    await first.release();
    const all = await Promise.all(waiters);
    const second = all.find((l) => l !== first);
    expect(second.fence).toBeGreaterThan(first.fence);
    await second.release();
  });

  it('withLock releases whatever fn does, and a timeout leaves the queue', async () => {
    const c = await cluster();
    const [a, b] = c.nodes;
    const seen = await a.withLock('w', ({ fence, signal }) => {
      expect(signal.aborted).toBe(false);
      return fence;
    });
    expect(seen).toBeGreaterThan(0);
    await expect(
      a.withLock('w', () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const held = await a.lock('w');
    await expect(b.lock('w', { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    const controller = new AbortController();
    const waiting = b.lock('w', { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('changed my mind')), 100);
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    // Neither stayed in the queue: released, the lock is free for anyone at once.
    await held.release();
    const again = await b.tryLock('w');
    expect(again).not.toBeNull();
    await again.release();
  });

  it('one session holds a lock once: asking again finds the same grant', async () => {
    const c = await cluster();
    const [a] = c.nodes;
    const session = await a.session();
    const one = await a.lock('r', { session });
    const two = await a.lock('r', { session });
    expect(two.fence).toBe(one.fence);
    await one.release();
    await two.release(); // releasing twice is harmless
    // Locks taken and released in turn leave no listener on the session's signal behind.
    const listening = getEventListeners(session.signal, 'abort').length;
    for (let i = 0; i < 20; i++) await (await a.lock(`r${i}`, { session })).release();
    expect(getEventListeners(session.signal, 'abort').length).toBe(listening);
    await session.close();
    await expect(a.lock('r', { session })).rejects.toMatchObject({ code: 'ERR_SESSION_LOST' });
  });

  it('10,000 waiters on one lock queue, leave on abort, and leave nothing behind', async () => {
    const c = await cluster();
    const [a, b] = c.nodes;
    const held = await a.lock('busy');
    const controller = new AbortController();
    setMaxListeners(20_000, controller.signal); // one signal for 10,000 requests, on purpose
    const waiters = Array.from({ length: 10_000 }, () => b.lock('busy', { signal: controller.signal, ttlMs: 60_000 }));
    const outcomes = Promise.allSettled(waiters); // settled whatever happens below
    await waitFor(() => b.metricsJson().lockWaiters === 10_000, { what: '10,000 waiters', timeoutMs: 60_000 });
    // Each waiter's own session and the holder's (and, under load, sessions whose opening
    // timed out and was asked again: their node closes them as they apply).
    expect(b.metricsJson().sessions).toBeGreaterThanOrEqual(10_001);
    controller.abort();
    await outcomes;
    expect((await outcomes).every((o) => o.status === 'rejected' && o.reason.name === 'AbortError')).toBe(true);
    await held.release();
    // Every waiter left its queue and closed its session; the lock is free.
    const left = () => {
      const { sessions, locksHeld, lockWaiters } = b.metricsJson();
      return { sessions, locksHeld, lockWaiters };
    };
    await waitFor(() => {
      const m = left();
      return m.lockWaiters === 0 && m.locksHeld === 0 && m.sessions === 0;
    }, { what: 'nothing leaked', timeoutMs: 30_000 }).catch((err) => {
      throw new Error(`${err.message}: ${JSON.stringify(left())}`);
    });
    const again = await b.tryLock('busy');
    expect(again).not.toBeNull();
    await again.release();
  }, 120_000);

  it('refuses bad input and locking on a stopped node', async () => {
    const c = await cluster();
    const [a] = c.nodes;
    await expect(a.lock('')).rejects.toThrow(RangeError);
    await expect(a.lock(42)).rejects.toThrow(TypeError);
    await expect(a.lock('x'.repeat(5000))).rejects.toThrow(/name/);
    await expect(a.lock('x', { session: {} })).rejects.toThrow(/opts\.session/);
    await expect(a.lock('x', { timeoutMs: -1 })).rejects.toThrow(RangeError);
    await expect(a.withLock('x', 'nope')).rejects.toThrow(/fn/);
    await c.kill(a.id);
    await expect(a.lock('x')).rejects.toMatchObject({ code: 'ERR_STOPPED' });
    await expect(a.session()).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });
});
