// `npm run bench:memory`: the memory of in-memory nodes (no dataDir), each case in a process
// of its own so that its RSS is its own:
//   - idle: the process with the addon loaded, then with one node leading itself;
//   - writes: a 3-node cluster overwriting 1,000 keys 1,000,000 times. The log is compacted
//     behind snapshots, so memory follows the state, not the number of writes: RSS after
//     1,000,000 overwrites must stay within 2x of RSS after 100,000 (the exit code says): a leak
//     of 150 bytes a write would fail it. Measured against 10,000 (before the first
//     snapshot), the ratio was 1.8-2.0 while RSS wandered between 137 and 182 MiB, without
//     growing, from 500,000 to 4,000,000 writes.
//   - twenty: a 20-node cluster in one process, after 10,000 writes.
// Run with --expose-gc so that the JS heap is measured after collection.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTestCluster } from 'raftline/testing';
import { RaftNode } from 'raftline';

const KEYS = 1000;
const IN_FLIGHT = 128;
const value = { user: 'someone', n: 0, tags: ['a', 'b'], note: 'x'.repeat(64) };

function sample() {
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

const mib = (b) => (b / 2 ** 20).toFixed(1);
const settle = (ms) => new Promise((r) => setTimeout(r, ms));

/** Overwrites KEYS keys through `leader` until `written` reaches `target`. */
async function overwrite(leader, from, target) {
  let written = from;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (written < target) {
        const i = written++;
        await leader.set(`k/${i % KEYS}`, { ...value, n: i });
      }
    }),
  );
}

/** Waits until every node applied what the leader committed (followers compact too). */
async function applied(c, leader) {
  const { commitIndex } = leader.status();
  while (c.nodes.some((n) => n.status().appliedIndex < commitIndex)) await settle(10);
}

const cases = {
  async idle() {
    const loaded = sample();
    const node = new RaftNode({ id: 'solo', listen: '127.0.0.1:0' });
    await node.start();
    await node.waitForLeader();
    await settle(1000);
    const idle = sample();
    await node.stop();
    console.log(`idle: RSS ${mib(loaded.rss)} MiB with the addon loaded, ${mib(idle.rss)} MiB with one node leading (JS heap ${mib(idle.heap)} MiB)`);
    return true;
  },

  async writes() {
    const c = await createTestCluster({ size: 3, timing: 'default' });
    try {
      const leader = await c.waitForLeader();
      const rows = [];
      let written = 0;
      const t0 = performance.now();
      for (const target of [10_000, 100_000, 1_000_000]) {
        await overwrite(leader, written, target);
        written = target;
        await applied(c, leader);
        const s = sample();
        const status = leader.status();
        rows.push(s);
        console.log(
          `writes: ${target.toLocaleString('en-US').padStart(9)} overwrites of ${KEYS} keys, 3 nodes: RSS ${mib(s.rss)} MiB, ` +
            `JS heap ${mib(s.heap)} MiB, leader log ${status.lastIndex - status.snapshotIndex} entries after snapshot ${status.snapshotIndex}`,
        );
      }
      const ratio = rows.at(-1).rss / rows[1].rss;
      const secs = (performance.now() - t0) / 1000;
      console.log(`writes: RSS ratio 1,000,000/100,000: ${ratio.toFixed(2)} (bound: 2.00); ${written.toLocaleString('en-US')} writes in ${secs.toFixed(1)} s`);
      return ratio <= 2;
    } finally {
      await c.close();
    }
  },

  async twenty() {
    const c = await createTestCluster({ size: 20, timing: 'default' });
    try {
      const leader = await c.waitForLeader();
      await overwrite(leader, 0, 10_000);
      await applied(c, leader);
      const s = sample();
      console.log(`twenty: 20 nodes in one process after 10,000 writes: RSS ${mib(s.rss)} MiB (${mib(s.rss / 20)} MiB a node), JS heap ${mib(s.heap)} MiB`);
      return true;
    } finally {
      await c.close();
    }
  },
};

const which = process.argv[2];
if (which) {
  process.exitCode = (await cases[which]()) ? 0 : 1;
} else {
  let ok = true;
  for (const name of Object.keys(cases)) {
    const child = fork(fileURLToPath(import.meta.url), [name], { execArgv: ['--expose-gc'] });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    ok &&= code === 0;
  }
  process.exitCode = ok ? 0 : 1;
}
