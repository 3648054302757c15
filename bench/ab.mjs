// `npm run bench -- --against <rev>`: the throughput and latency figures of this checkout and
// of another commit, measured in turns in one run (ABAB...), since this kind of machine
// drifts by tens of percent within minutes. The other commit is checked out in a worktree
// under the system's temporary directory and built there (its release build shares
// target/ab/, so a second run against the same commit starts at once).
import { execFileSync, fork } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writesPerSecond, writeLatency } from './workload.mjs';

const here = path.resolve(fileURLToPath(new URL('..', import.meta.url)));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** A worktree of `rev` with its addon built; returns its root. */
export function prepare(rev) {
  const sha = execFileSync('git', ['rev-parse', '--short', rev], { cwd: here, encoding: 'utf8' }).trim();
  const root = path.join(os.tmpdir(), `raftline-ab-${sha}`);
  if (!existsSync(root)) execFileSync('git', ['worktree', 'add', '--detach', root, sha], { cwd: here, stdio: 'inherit' });
  if (!existsSync(path.join(root, 'node_modules'))) symlinkSync(path.join(here, 'node_modules'), path.join(root, 'node_modules'));
  mkdirSync(path.join(here, 'target', 'ab'), { recursive: true });
  console.log(`building ${sha} in ${root} ...`);
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, CARGO_TARGET_DIR: path.join(here, 'target', 'ab') } });
  return { sha, root };
}

/** One round of figures from the package at `root`, in a process of its own. */
function round(root) {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--case', root], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', resolve);
    child.once('exit', (code) => code !== 0 && reject(new Error(`the round for ${root} exited with ${code}`)));
  });
}

/** The figures of one round: throughput at 1, 64 and 256 in flight, latency, durable. */
async function measure(root) {
  const { createTestCluster } = await import(pathToFileURL(path.join(root, 'js', 'testing.mjs')).href);
  const { mkdtempSync, rmSync } = await import('node:fs');
  const cluster = async (durable) => {
    const dataDir = durable ? mkdtempSync(path.join(os.tmpdir(), 'raftline-ab-data-')) : undefined;
    const c = await createTestCluster({ size: 3, timing: 'default', dataDir });
    const close = async () => {
      await c.close();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    };
    return { leader: await c.waitForLeader(), close };
  };
  const throughput = async (inFlight, total, durable = false) => {
    const { leader, close } = await cluster(durable);
    try {
      return await writesPerSecond(leader, inFlight, total, { warmup: 1000 });
    } finally {
      await close();
    }
  };
  const latency = async () => {
    const { leader, close } = await cluster(false);
    try {
      return await writeLatency(leader, 5000, { keys: 100 });
    } finally {
      await close();
    }
  };
  const { p50, p99 } = await latency();
  return {
    'writes/s, 256 in flight': await throughput(256, 50_000),
    'writes/s, 64 in flight': await throughput(64, 30_000),
    'writes/s, 1 in flight': await throughput(1, 5_000),
    'durable writes/s, 256 in flight': await throughput(256, 20_000, true),
    'latency p50, ms': p50,
    'latency p99, ms': p99,
  };
}

export async function compare(rev, runs) {
  const other = prepare(rev);
  const mine = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).trim();
  const results = { a: [], b: [] };
  // ABBA: whichever goes first in a round has the machine in another state (the check of
  // this checkout against itself showed 12% for going first).
  for (let i = 0; i < runs; i++) {
    for (const side of i % 2 === 0 ? ['a', 'b'] : ['b', 'a']) {
      results[side].push(await round(side === 'a' ? here : other.root));
    }
    console.log(`round ${i + 1}/${runs} done`);
  }
  console.log(`\nthis checkout (${mine}, with its working tree) against ${other.sha}, medians of ${runs} rounds taken in turns (ABBA):\n`);
  console.log(`| figure | this checkout | ${other.sha} | change |\n| --- | --- | --- | --- |`);
  for (const key of Object.keys(results.a[0])) {
    const a = median(results.a.map((r) => r[key]));
    const b = median(results.b.map((r) => r[key]));
    const digits = key.includes('ms') ? 3 : 0;
    console.log(`| ${key} | ${fmt(a, digits)} | ${fmt(b, digits)} | ${fmt(100 * (a / b - 1), 1)}% |`);
  }
}

if (process.argv[2] === '--case') {
  process.send(await measure(process.argv[3]));
}
