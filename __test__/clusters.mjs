// Test clusters that close after each test, whatever the test did (apart from helpers.mjs,
// which bench/ imports too: this file needs vitest's runner).
import { afterEach } from 'vitest';
import { createTestCluster } from 'raftline/testing';

/**
 * Returns `cluster(opts)`, which starts a test cluster (`createTestCluster` with `opts` over
 * `defaults`) that closes after the test that started it. Call it once at a file's top level.
 */
export function clusterPerTest(defaults = {}) {
  const open = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });
  return async (opts = {}) => {
    const c = await createTestCluster({ ...defaults, ...opts });
    open.push(c);
    return c;
  };
}

/** `{ c, leader, followers }` once test cluster `c` has a leader. */
export async function withLeader(c) {
  const leader = await c.waitForLeader();
  return { c, leader, followers: c.nodes.filter((n) => n !== leader) };
}
