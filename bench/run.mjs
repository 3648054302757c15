// `npm run bench`: figures for an in-process 3-node cluster with in-memory storage.
//   - write throughput with 256 (with and without a secret, in turns), 64 and 1 in flight,
//     in memory and durable
//   - write latency p50/p99 with 1 in flight, in memory and durable
//   - 3 processes on loopback, as deployed: latency and 256 in flight in the leader's process
//   - failover: the leader's process SIGKILLed, or the leader partitioned away -> a new
//     leader accepts a write, fast and default timing
// Each is measured over several runs; the median and the worst are printed.
// `npm run bench -- --against <rev>` instead compares this checkout with another commit
// (bench/ab.mjs), measured in turns.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { createTestCluster } from 'raftline/testing';
import { RaftNode } from 'raftline';
import { freePorts } from '../__test__/helpers.mjs';
import { writesPerSecond, writeLatency } from './workload.mjs';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const quick = process.env.BENCH_QUICK === '1';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function withDataDir(durable, fn) {
  if (!durable) return fn(undefined);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'raftline-bench-'));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

const throughput = (inFlight, total, durable = false, options = {}) => withDataDir(durable, async (dataDir) => {
  const c = await createTestCluster({ size: 3, timing: 'default', dataDir, ...options });
  try {
    return await writesPerSecond(await c.waitForLeader(), inFlight, total);
  } finally {
    await c.close();
  }
});

const latency = (count, durable = false) => withDataDir(durable, async (dataDir) => {
  const c = await createTestCluster({ size: 3, timing: 'default', dataDir });
  try {
    return await writeLatency(await c.waitForLeader(), count);
  } finally {
    await c.close();
  }
});

/** A single durable node holding `entries` log entries (no snapshot): time to start again. */
const restartTime = (entries) => withDataDir(true, async (dataDir) => {
  const options = { id: 'r1', dataDir, listen: '127.0.0.1:0', snapshotEvery: entries * 2 };
  const node = new RaftNode(options);
  await node.start();
  await node.waitForLeader();
  let next = 0;
  await Promise.all(
    Array.from({ length: 512 }, async () => {
      while (next < entries) await node.set(`r/${next++ % 50_000}`, next);
    }),
  );
  const last = node.status().lastIndex;
  await node.stop();
  const t0 = performance.now();
  const again = new RaftNode(options);
  await again.start();
  const started = performance.now() - t0;
  await again.waitForLeader();
  const ready = performance.now() - t0;
  const recovered = again.status().lastIndex;
  await again.stop();
  if (recovered < last) throw new Error(`restart recovered ${recovered} of ${last} entries`);
  return { started, ready, entries: last };
});

const TIMINGS = {
  fast: { heartbeatMs: 10, electionTimeoutMs: 50 },
  default: { heartbeatMs: 50, electionTimeoutMs: 150 },
};

/** A member process (bench/member.mjs) and its IPC calls. */
function memberProcess(options) {
  const child = fork(fileURLToPath(new URL('./member.mjs', import.meta.url)), [JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let rid = 0;
  const ready = new Promise((resolve, reject) => {
    child.once('exit', () => reject(new Error(`${options.id} exited before it was ready`)));
    child.on('message', (m) => {
      if (m.ready) return resolve();
      const p = pending.get(m.rid);
      pending.delete(m.rid);
      if (m.ok) p.resolve(m.result);
      else p.reject(Object.assign(new Error(m.code), { code: m.code }));
    });
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.on('exit', () => pending.forEach((p) => p.reject(new Error('exited'))));
  const call = (cmd, args = {}) =>
    new Promise((resolve, reject) => {
      pending.set(++rid, { resolve, reject });
      child.send({ rid, cmd, args });
    });
  return { child, ready, exited, call };
}

/**
 * Runs `fn(members, leader)` on 3 member processes on loopback (bench/member.mjs) once one
 * of them leads (`leader`: its index); every process is gone when it settles.
 */
async function withProcesses(timing, fn) {
  const ids = ['p1', 'p2', 'p3'];
  const ports = await freePorts(3);
  const peers = Object.fromEntries(ids.map((id, i) => [id, `ws://127.0.0.1:${ports[i]}`]));
  // As deployed: every member proves a secret and seals every frame.
  const secret = randomBytes(32).toString('hex');
  const members = ids.map((id) => memberProcess({ id, peers, secret, logLevel: 'error', ...TIMINGS[timing] }));
  try {
    await Promise.all(members.map((m) => m.ready));
    let statuses;
    do {
      statuses = await Promise.all(members.map((m) => m.call('status')));
    } while (!statuses.some((s) => s.role === 'leader'));
    return await fn(members, statuses.findIndex((s) => s.role === 'leader'));
  } finally {
    members.forEach((m) => m.child.connected && m.child.disconnect());
    members.forEach((m) => m.child.kill('SIGKILL'));
    await Promise.all(members.map((m) => m.exited));
  }
}

/** Writes issued in the leader's process of 3 processes on loopback: one at a time, and 256. */
const processWrites = () => withProcesses('default', async (members, leader) => ({
  ...(await members[leader].call('latency', { count: quick ? 2000 : 10_000 })),
  throughput: await members[leader].call('throughput', { inFlight: 256, total: quick ? 20_000 : 100_000 }),
}));

/** SIGKILL of the leader's process (3 processes on loopback) until a survivor accepts a write. */
const processFailover = (timing) => withProcesses(timing, async (members, old) => {
  await members[old].call('set', { key: 'before', value: 1, timeoutMs: 1000 });
  const survivors = members.filter((_, i) => i !== old);
  const t0 = performance.now();
  members[old].child.kill('SIGKILL');
  for (;;) {
    const now = await Promise.all(survivors.map((m) => m.call('status')));
    const leader = survivors[now.findIndex((s) => s.role === 'leader')];
    if (leader) {
      try {
        await leader.call('set', { key: 'after', value: 2, timeoutMs: 1000 });
        return performance.now() - t0;
      } catch {
        // lost the election race or not yet committed in its term: try again
      }
    }
    if (performance.now() - t0 > 10_000) throw new Error('no failover within 10 s');
  }
});

/** The leader cut off from both followers (its process alive) until the majority accepts a write. */
async function partitionFailover(timing) {
  const c = await createTestCluster({ size: 3, timing });
  try {
    const old = await c.waitForLeader();
    await old.set('before', 1);
    const survivors = c.nodes.filter((n) => n !== old);
    const t0 = performance.now();
    c.partition([old.id], survivors.map((n) => n.id));
    for (;;) {
      const leader = survivors.find((n) => n.role === 'leader');
      if (leader) {
        try {
          await leader.set('after', 2, { timeoutMs: 1000, forward: false });
          return performance.now() - t0;
        } catch {
          // not yet committed in its term: try again
        }
      }
      await new Promise((r) => setTimeout(r, 1));
      if (performance.now() - t0 > 10_000) throw new Error('no failover within 10 s');
    }
  } finally {
    await c.close();
  }
}

/** transferLeadership() until the new leader accepted a write. */
async function transferTimes(count) {
  const c = await createTestCluster({ size: 3, timing: 'fast' });
  try {
    const xs = [];
    for (let i = 0; i < count; i++) {
      const leader = await c.waitForLeader();
      await leader.set('warm', i);
      const t0 = performance.now();
      const to = await leader.transferLeadership();
      await c.node(to).set('after', i, { forward: false });
      xs.push(performance.now() - t0);
    }
    return xs;
  } finally {
    await c.close();
  }
}

/** Longest gap between acknowledged writes while every member is stopped and restarted. */
const rollingRestartStall = () => withDataDir(true, async (dataDir) => {
  const c = await createTestCluster({ size: 3, timing: 'default', dataDir });
  try {
    await c.waitForLeader();
    let stop = false;
    let last = performance.now();
    let maxGap = 0;
    // Like a load balancer behind readiness probes (docs/API.md's /ready), the writer uses the
    // members that know a leader and have applied what they know committed: a member that
    // is still restarting would make a write wait until it has caught up.
    const ready = (n) => {
      if (n.role === 'stopped' || n.leaderId === null) return false;
      const s = n.status();
      return s.appliedIndex >= s.commitIndex;
    };
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const running = c.nodes.filter(ready);
        if (running.length === 0) {
          // between elections nobody is ready: yield to timers, never starve the event loop
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        try {
          await running[i % running.length].set(`r${i}`, i, { timeoutMs: 1000 });
          const now = performance.now();
          maxGap = Math.max(maxGap, now - last);
          last = now;
        } catch {
          // outcome unknown or member stopping: the next member
          // yield to timers: a failing loop must never starve the event loop
          await new Promise((r) => setImmediate(r));
        }
      }
    })();
    for (const id of ['n1', 'n2', 'n3']) {
      await new Promise((r) => setTimeout(r, 200));
      await c.node(id).stop();
      await (await c.restart(id)).waitForLeader();
    }
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await writer;
    return maxGap;
  } finally {
    await c.close();
  }
});

async function series(label, runs, fn) {
  const xs = [];
  for (let i = 0; i < runs; i++) xs.push(await fn());
  return { label, xs };
}

const against = process.argv.indexOf('--against');
if (against !== -1) {
  // A/B: this checkout against another commit, in turns (bench/ab.mjs).
  const { compare } = await import('./ab.mjs');
  await compare(process.argv[against + 1] ?? 'HEAD~1', RUNS);
  process.exit(0);
}

console.log(`raftline bench: 3-node in-process cluster, in-memory storage, ${RUNS} runs each (node ${process.version})\n`);
const total = quick ? 20_000 : 100_000;
// With and without a secret in turns (ABAB), so that the machine's drift falls on both alike.
const tput = { xs: [] };
const open = { xs: [] };
for (let i = 0; i < RUNS; i++) {
  tput.xs.push(await throughput(256, total));
  // The test clusters prove a secret and seal every frame; the same without a secret:
  open.xs.push(await throughput(256, total, false, { secret: false }));
}
console.log(`write throughput, 256 in flight (${fmt(total)} writes): median ${fmt(median(tput.xs))} writes/s, worst ${fmt(Math.min(...tput.xs))} writes/s`);
const sealedCost = 1 - median(tput.xs) / median(open.xs);
const cost = sealedCost >= 0 ? `${fmt(100 * sealedCost, 1)}% lower` : `no lower (${fmt(-100 * sealedCost, 1)}% higher: noise)`;
console.log(`write throughput without a secret (frames neither sealed nor authenticated): median ${fmt(median(open.xs))} writes/s; with the secret ${cost}`);
for (const inFlight of [1, 64]) {
  const xs = [];
  for (let i = 0; i < RUNS; i++) xs.push(await throughput(inFlight, inFlight === 1 ? total / 10 : total));
  console.log(`write throughput, ${inFlight} in flight: median ${fmt(median(xs))} writes/s`);
}
const lat = await series('latency', RUNS, () => latency(quick ? 2000 : 10_000));
const p50s = lat.xs.map((x) => x.p50);
const p99s = lat.xs.map((x) => x.p99);
console.log(`write latency, 1 in flight: p50 median ${fmt(median(p50s), 3)} ms (worst ${fmt(Math.max(...p50s), 3)}), p99 median ${fmt(median(p99s), 3)} ms (worst ${fmt(Math.max(...p99s), 3)})`);
const dTotal = quick ? 10_000 : 50_000;
const dtput = await series('durable throughput', RUNS, () => throughput(256, dTotal, true));
console.log(`durable write throughput, 256 in flight (${fmt(dTotal)} writes, fsync per Ready): median ${fmt(median(dtput.xs))} writes/s, worst ${fmt(Math.min(...dtput.xs))} writes/s`);
for (const inFlight of [1, 64]) {
  const d = await series(`durable throughput ${inFlight}`, RUNS, () => throughput(inFlight, inFlight === 1 ? dTotal / 25 : dTotal / 2, true));
  console.log(`durable write throughput, ${inFlight} in flight: median ${fmt(median(d.xs))} writes/s`);
}
const dlat = await series('durable latency', RUNS, () => latency(quick ? 500 : 2000, true));
const dp50s = dlat.xs.map((x) => x.p50);
console.log(`durable write latency, 1 in flight: p50 median ${fmt(median(dp50s), 3)} ms (worst ${fmt(Math.max(...dp50s), 3)}), p99 median ${fmt(median(dlat.xs.map((x) => x.p99)), 3)} ms`);
const procs = await series('processes', RUNS, processWrites);
console.log(
  `3 processes on loopback (as deployed), writes in the leader's process: p50 median ${fmt(median(procs.xs.map((x) => x.p50)), 3)} ms, ` +
    `p99 median ${fmt(median(procs.xs.map((x) => x.p99)), 3)} ms; 256 in flight: median ${fmt(median(procs.xs.map((x) => x.throughput)))} writes/s`,
);
const restartEntries = quick ? 100_000 : 1_000_000;
const r = await restartTime(restartEntries);
console.log(`restart of a durable node holding ${fmt(r.entries)} log entries: start() resolved in ${fmt(r.started)} ms, leader again in ${fmt(r.ready)} ms`);
const transfers = await transferTimes(quick ? 9 : 21);
console.log(`leadership transfer (fast timing) until the new leader accepted a write: median ${fmt(median(transfers), 1)} ms, max ${fmt(Math.max(...transfers), 1)} ms over ${transfers.length} transfers`);
const stalls = await series('rolling restart', quick ? 2 : 3, rollingRestartStall);
console.log(`rolling restart of a 3-node durable cluster (stop() then restart, each member in turn): longest gap between acknowledged writes median ${fmt(median(stalls.xs), 1)} ms, max ${fmt(Math.max(...stalls.xs), 1)} ms`);
for (const timing of ['fast', 'default']) {
  const { heartbeatMs, electionTimeoutMs } = TIMINGS[timing];
  const note = `heartbeat ${heartbeatMs} ms, election ${electionTimeoutMs} ms`;
  const killed = await series('failover by SIGKILL', RUNS, () => processFailover(timing));
  console.log(`failover, SIGKILL of the leader's process until a survivor accepts a write (${timing}: ${note}): median ${fmt(median(killed.xs), 1)} ms, max ${fmt(Math.max(...killed.xs), 1)} ms  [${killed.xs.map((x) => fmt(x, 1)).join(', ')}]`);
  const cut = await series('failover by partition', RUNS, () => partitionFailover(timing));
  console.log(`failover, leader partitioned away until the majority accepts a write (${timing}): median ${fmt(median(cut.xs))} ms, max ${fmt(Math.max(...cut.xs))} ms`);
}
