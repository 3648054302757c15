// `npm run test:upgrade -- --from <rev>`: a rolling upgrade from the release at <rev> to this
// checkout, under writes. Three members start from <rev>'s build (each a process of its own,
// durable, on fixed ports); a writer keeps writing through every member; one member at a time
// is stopped and started again from this checkout's build on the same data directory and
// port, and waits until it has caught up. At the end every acknowledged write must be on
// every member, with the value acknowledged. The older build comes from a worktree under the
// system's temporary directory (bench/ab.mjs builds it: minutes the first time), which is why
// this is not part of `npm test`; docs/DESIGN.md ("Upgrades") says when to run it.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { prepare } from '../../bench/ab.mjs';
import { freePorts, waitFor } from '../helpers.mjs';

const here = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
const from = process.argv.includes('--from') ? process.argv[process.argv.indexOf('--from') + 1] : 'HEAD~1';
const old = prepare(from);
const ids = ['n1', 'n2', 'n3'];
const ports = await freePorts(3);
const peers = Object.fromEntries(ids.map((id, i) => [id, `ws://127.0.0.1:${ports[i]}`]));
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftline-upgrade-'));

/** Starts member `id` from the package at `lib`; resolves with a handle to ask it things. */
async function launch(id, lib) {
  const options = { id, peers, dataDir: path.join(root, id), electionTimeoutMs: 300, logLevel: 'error' };
  const child = fork(path.join(here, '__test__', 'upgrade', 'member.mjs'), [lib, JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let next = 0;
  child.on('message', (m) => {
    if (m.ready) return;
    const p = pending.get(m.rid);
    pending.delete(m.rid);
    if (m.ok) p.resolve(m.result);
    else p.reject(Object.assign(new Error(m.message), { code: m.code }));
  });
  child.on('exit', () => {
    for (const p of pending.values()) p.reject(Object.assign(new Error('member exited'), { code: 'ERR_STOPPED' }));
    pending.clear();
  });
  await new Promise((resolve, reject) => {
    child.once('message', (m) => (m.ready ? resolve() : reject(new Error(`member ${id} did not start`))));
    child.once('exit', (code) => reject(new Error(`member ${id} exited with ${code}`)));
  });
  const stopped = () => Object.assign(new Error(`member ${id} is stopped`), { code: 'ERR_STOPPED' });
  const ask = (cmd, args) => new Promise((resolve, reject) => {
    if (!child.connected) return reject(stopped());
    const rid = next++;
    pending.set(rid, { resolve, reject });
    child.send({ rid, cmd, args }, (err) => {
      if (!err) return;
      pending.delete(rid);
      reject(stopped());
    });
  });
  return { id, lib, child, ask };
}

const members = {};
// Whatever happens, no member outlives this script.
process.on('exit', () => Object.values(members).forEach((m) => m.child.kill('SIGKILL')));
for (const id of ids) members[id] = await launch(id, old.root);
const statuses = () => Promise.all(ids.map((id) => members[id].ask('status').catch(() => null)));
const oneLeader = async () => {
  const s = await statuses();
  const leaders = s.filter((x) => x && x.role === 'leader');
  return leaders.length === 1 && s.every((x) => x && x.leaderId === leaders[0].id) ? leaders[0] : null;
};
await waitFor(oneLeader, { what: 'a leader among the old members', timeoutMs: 20_000 });
console.log(`three members of ${old.sha} lead and follow; upgrading them one at a time to this checkout under writes`);

// The writer: unique keys, through every member in turn (a follower forwards to the leader).
const acked = new Map();
let failed = 0;
let writing = true;
let maxGap = 0;
let lastAck = Date.now();
const writer = (async () => {
  for (let i = 0; writing; i++) {
    const member = members[ids[i % 3]];
    try {
      await member.ask('set', { key: `k${i}`, value: i });
      acked.set(`k${i}`, i);
      maxGap = Math.max(maxGap, Date.now() - lastAck);
      lastAck = Date.now();
    } catch {
      failed++;
    }
  }
})();

for (const id of ids) {
  const before = acked.size;
  await waitFor(() => acked.size >= before + 300, { what: 'writes before the next step', timeoutMs: 30_000 });
  await members[id].ask('stop');
  await new Promise((resolve) => (members[id].child.exitCode !== null ? resolve() : members[id].child.once('exit', resolve)));
  members[id] = await launch(id, here);
  const leader = await waitFor(oneLeader, { what: `a leader after ${id} came back`, timeoutMs: 20_000 });
  await waitFor(async () => (await members[id].ask('status')).appliedIndex >= leader.commitIndex, { what: `${id} caught up`, timeoutMs: 20_000 });
  console.log(`${id} runs this checkout and has caught up (${acked.size} writes acknowledged so far)`);
}
const total = acked.size;
await waitFor(() => acked.size >= total + 300, { what: 'writes after the upgrade', timeoutMs: 30_000 });
writing = false;
await writer;

// Every acknowledged write is on every member, with its value.
const leader = await waitFor(oneLeader, { what: 'a leader at the end' });
let lost = 0;
for (const id of ids) {
  await waitFor(async () => (await members[id].ask('status')).appliedIndex >= leader.commitIndex, { what: `${id} applied everything` });
  const state = new Map(await members[id].ask('state'));
  for (const [key, value] of acked) if (state.get(key) !== value) lost++;
}
for (const id of ids) await members[id].ask('stop').catch(() => {});
fs.rmSync(root, { recursive: true, force: true });
console.log(`${acked.size} writes acknowledged, ${failed} refused or timed out during the steps (none is acknowledged), longest gap between acknowledgements ${maxGap} ms`);
console.log(`acknowledged writes missing or different on some member: ${lost}`);
if (lost > 0) {
  console.log('ROLLING UPGRADE FAILED');
  process.exit(1);
}
console.log(`rolling upgrade from ${old.sha} to this checkout: nothing lost`);
