// The write workloads the benches measure, on any node: one of an in-process cluster
// (run.mjs), of another commit's build (ab.mjs), or in a member process (member.mjs).

/** The value every write of the throughput workload writes. */
export const VALUE = { user: 'someone', n: 0, tags: ['a', 'b'] };

/**
 * Writes/s of `total` writes through `node` with `inFlight` at a time (over 10,000 keys),
 * after `warmup` writes. `opts`: the options of every write.
 */
export async function writesPerSecond(node, inFlight, total, { warmup = 2000, opts } = {}) {
  for (let i = 0; i < warmup; i++) await node.set(`warm/${i % 100}`, VALUE, opts);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await node.set(`k/${next++ % 10_000}`, VALUE, opts);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/**
 * p50 and p99 in ms of `count` writes through `node` over `keys` keys, one at a time, after
 * 500 to warm up (cold, the first writes run before the JIT compiled the path).
 */
export async function writeLatency(node, count, { keys = 1000, opts } = {}) {
  for (let i = 0; i < 500; i++) await node.set('warm', i, opts);
  const samples = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await node.set(`lat/${i % keys}`, i, opts);
    samples[i] = performance.now() - t0;
  }
  samples.sort();
  const at = (p) => samples[Math.min(count - 1, Math.floor((count * p) / 100))];
  return { p50: at(50), p99: at(99) };
}
