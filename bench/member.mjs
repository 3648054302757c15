// One raftline node in a process of its own, for bench/run.mjs's figures of a cluster of
// processes (as deployed): failover (the parent SIGKILLs the leader's process) and writes
// issued in the leader's own process. Argument: the node's options (JSON). Over IPC it
// answers `status`, `set`, `latency` and `throughput`, and says `ready` once started.
import { RaftNode } from 'raftline';

const node = new RaftNode(JSON.parse(process.argv[2]));
const value = { user: 'someone', n: 0, tags: ['a', 'b'] };

/** p50 and p99 of `count` writes one after another (after a warm-up), in ms. */
async function latency({ count }) {
  for (let i = 0; i < 500; i++) await node.set('warm', i, { forward: false });
  const xs = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await node.set(`lat/${i % 1000}`, i, { forward: false });
    xs[i] = performance.now() - t0;
  }
  xs.sort();
  return { p50: xs[Math.floor(count / 2)], p99: xs[Math.floor(count * 0.99)] };
}

/** Writes/s of `total` writes with `inFlight` at a time. */
async function throughput({ inFlight, total }) {
  for (let i = 0; i < 2000; i++) await node.set(`warm/${i % 100}`, value, { forward: false });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await node.set(`k/${next++ % 10_000}`, value, { forward: false });
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

const commands = {
  status: () => node.status(),
  set: (args) => node.set(args.key, args.value, { timeoutMs: args.timeoutMs, forward: false }),
  latency,
  throughput,
};

await node.start();
process.send({ ready: true });
process.on('message', async ({ rid, cmd, args }) => {
  try {
    process.send({ rid, ok: true, result: await commands[cmd](args) });
  } catch (err) {
    process.send({ rid, ok: false, code: err.code });
  }
});
process.on('disconnect', () => node.stop({ transferLeadership: false }));
