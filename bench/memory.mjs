// `npm run bench:memory`: memory of an in-memory 3-node cluster (no dataDir) under a stream
// of overwrites. The log is compacted behind snapshots, so memory follows the state (1,000
// keys here), not the number of writes: RSS after 200,000 overwrites should be within 2x of
// RSS after 10,000. Run with --expose-gc so that the JS heap is measured after collection.
import { createTestCluster } from 'raftline/testing';

const KEYS = 1000;
const CHECKPOINTS = [10_000, 50_000, 100_000, 200_000];
const IN_FLIGHT = 128;

function sample() {
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

const mib = (b) => (b / 2 ** 20).toFixed(1);

const c = await createTestCluster({ size: 3, timing: 'default' });
try {
  const leader = await c.waitForLeader();
  const value = { user: 'someone', n: 0, tags: ['a', 'b'], note: 'x'.repeat(64) };
  let written = 0;
  const rows = [];
  const t0 = performance.now();
  for (const target of CHECKPOINTS) {
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (written < target) {
          const i = written++;
          await leader.set(`k/${i % KEYS}`, { ...value, n: i });
        }
      }),
    );
    // Let followers apply and compact too before measuring.
    const { commitIndex } = leader.status();
    while (c.nodes.some((n) => n.status().appliedIndex < commitIndex)) await new Promise((r) => setTimeout(r, 10));
    const s = sample();
    const status = leader.status();
    rows.push({ writes: target, ...s, log: status.lastIndex - status.snapshotIndex });
    console.log(
      `${target.toLocaleString('en-US').padStart(8)} overwrites: RSS ${mib(s.rss)} MiB, JS heap ${mib(s.heap)} MiB, ` +
        `leader log ${status.lastIndex - status.snapshotIndex} entries after snapshot ${status.snapshotIndex}`,
    );
  }
  const ratio = rows.at(-1).rss / rows[0].rss;
  const secs = (performance.now() - t0) / 1000;
  console.log(`RSS ratio 200k/10k: ${ratio.toFixed(2)} (bound: 2.00); ${CHECKPOINTS.at(-1).toLocaleString('en-US')} writes in ${secs.toFixed(1)} s`);
  process.exitCode = ratio <= 2 ? 0 : 1;
} finally {
  await c.close();
}
