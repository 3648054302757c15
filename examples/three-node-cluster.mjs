// `npm run demo`: a 3-node raftline cluster in 3 OS processes on loopback. It shows the
// election, replicates writes, SIGKILLs the leader's process, measures the failover, checks
// that every acknowledged key survived, and that new writes are accepted.
//
//   node examples/three-node-cluster.mjs
//
// The same file is the member process (started with --member): one RaftNode each, driven by
// the parent over the IPC channel.
import { fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { RaftNode } from 'raftline';

const KEYS = 200;

// ---- member process --------------------------------------------------------------------

async function member(id, peers) {
  const node = new RaftNode({ id, peers });
  node.on('leaderChange', (e) => process.send({ type: 'leaderChange', id, ...e }));
  await node.start();
  process.send({ type: 'ready', id, url: node.url });
  process.on('message', async ({ rid, cmd, args }) => {
    try {
      let result;
      if (cmd === 'set') result = await node.set(args.key, args.value, { timeoutMs: args.timeoutMs });
      else if (cmd === 'get') result = await node.get(args.key);
      else if (cmd === 'count') result = (await node.entries({ prefix: args.prefix })).length;
      else if (cmd === 'status') result = node.status();
      else if (cmd === 'stop') {
        await node.stop();
        // Answer, then let go of the IPC channel: nothing is left and the process exits.
        process.send({ rid, ok: true }, () => process.disconnect());
        return;
      }
      process.send({ rid, ok: true, result });
    } catch (err) {
      process.send({ rid, ok: false, error: { code: err.code, message: err.message } });
    }
  });
}

// ---- the demo --------------------------------------------------------------------------

function freePorts(n) {
  return Promise.all(
    Array.from({ length: n }, () => new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    })),
  );
}

class Member {
  #rid = 0;
  #pending = new Map();
  constructor(id, peers, onEvent) {
    this.id = id;
    this.child = fork(fileURLToPath(import.meta.url), ['--member', id, JSON.stringify(peers)]);
    this.ready = new Promise((resolve) => (this.onReady = resolve));
    this.child.on('message', (m) => {
      if (m.type === 'ready') this.onReady();
      else if (m.type) onEvent(m);
      else {
        const p = this.#pending.get(m.rid);
        this.#pending.delete(m.rid);
        if (m.ok) p.resolve(m.result);
        else p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      }
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve(signal ?? code)));
    this.child.on('exit', () => {
      for (const p of this.#pending.values()) p.reject(Object.assign(new Error('process exited'), { code: 'EXITED' }));
      this.#pending.clear();
    });
  }
  call(cmd, args = {}) {
    return new Promise((resolve, reject) => {
      const rid = ++this.#rid;
      this.#pending.set(rid, { resolve, reject });
      this.child.send({ rid, cmd, args });
    });
  }
}

async function main() {
  const started = Date.now();
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(ids.length);
  const peers = Object.fromEntries(ids.map((id, i) => [id, `ws://127.0.0.1:${ports[i]}`]));
  console.log('raftline demo: 3 processes on loopback');
  for (const id of ids) console.log(`  ${id}  ${peers[id]}`);

  let leader = null;
  const leaderWaiters = [];
  const onEvent = (e) => {
    if (e.type !== 'leaderChange' || !e.isLeader) return;
    leader = e.id;
    console.log(`  [event] ${e.id} became leader (term ${e.term})`);
    leaderWaiters.splice(0).forEach((w) => w());
  };
  const members = Object.fromEntries(ids.map((id) => [id, new Member(id, peers, onEvent)]));
  await Promise.all(Object.values(members).map((m) => m.ready));
  const waitLeader = () => (leader ? Promise.resolve() : new Promise((r) => leaderWaiters.push(r)));
  await waitLeader();
  console.log(`\n1. election: ${leader} leads, ${Date.now() - started} ms after launch`);

  // Writes through every member: followers forward to the leader.
  const t0 = performance.now();
  await Promise.all(Array.from({ length: KEYS }, (_, i) => members[ids[i % 3]].call('set', { key: `key/${i}`, value: { i, by: ids[i % 3] } })));
  const ms = performance.now() - t0;
  console.log(`2. replication: ${KEYS} writes through all three members in ${ms.toFixed(1)} ms`);
  for (const id of ids) {
    const count = await members[id].call('count', { prefix: 'key/' });
    console.log(`   ${id} holds ${count} keys`);
    if (count !== KEYS) throw new Error(`${id} holds ${count} keys, expected ${KEYS}`);
  }

  // Failover: SIGKILL the leader's process, then write until a survivor accepts.
  const victim = leader;
  const survivors = ids.filter((id) => id !== victim);
  leader = null;
  const killedAt = performance.now();
  members[victim].child.kill('SIGKILL');
  console.log(`3. failover: SIGKILL sent to ${victim} (pid ${members[victim].child.pid})`);
  let accepted = null;
  for (let attempt = 0; accepted === null; attempt++) {
    try {
      await members[survivors[attempt % 2]].call('set', { key: 'after-failover', value: true, timeoutMs: 100 });
      accepted = performance.now() - killedAt;
    } catch (err) {
      if (performance.now() - killedAt > 10_000) throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  await waitLeader();
  console.log(`   new leader ${leader}; first write accepted ${accepted.toFixed(0)} ms after the kill`);
  console.log(`   (${victim} exited with ${await members[victim].exited})`);

  for (const id of survivors) {
    let missing = 0;
    for (let i = 0; i < KEYS; i++) {
      const v = await members[id].call('get', { key: `key/${i}` });
      if (!v || v.i !== i) missing++;
    }
    console.log(`4. ${id}: ${KEYS - missing}/${KEYS} keys preserved`);
    if (missing) throw new Error(`${id} lost ${missing} keys`);
  }
  await members[survivors[0]].call('set', { key: 'new-write', value: 'accepted' });
  const back = await members[survivors[1]].call('get', { key: 'new-write' });
  console.log(`5. new writes: set on ${survivors[0]}, read on ${survivors[1]} -> ${JSON.stringify(back)}`);

  await Promise.all(survivors.map((id) => members[id].call('stop')));
  await Promise.all(survivors.map((id) => members[id].exited));
  console.log(`\ndone in ${Date.now() - started} ms; survivors stopped gracefully and exited`);
}

if (process.argv[2] === '--member') {
  await member(process.argv[3], JSON.parse(process.argv[4]));
} else {
  await main();
}
