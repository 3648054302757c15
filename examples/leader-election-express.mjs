// Three Express apps in one process, each embedding a RaftNode. Only the leader runs the
// periodic job (through runWhileLeader, fenced by its term); when the leader dies, the job
// moves to the new leader. Every app answers GET /leader.
//
//   node examples/leader-election-express.mjs
import net from 'node:net';
import express from 'express';
import { RaftNode } from 'raftline';

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

const ids = ['api-0', 'api-1', 'api-2'];
const raftPorts = await freePorts(ids.length);
const peers = Object.fromEntries(ids.map((id, i) => [id, `ws://127.0.0.1:${raftPorts[i]}`]));
const jobLog = [];

async function startService(id) {
  const node = new RaftNode({ id, peers, heartbeatMs: 20, electionTimeoutMs: 100 });
  await node.start();

  // The singleton job: a report every 50 ms, written with the reign's term as fencing token.
  const cancelJob = node.runWhileLeader(async ({ signal, term }) => {
    jobLog.push(`${id} started the job (term ${term})`);
    console.log(`  [job] ${id} runs the periodic job, fencing token (term) ${term}`);
    let runs = 0;
    while (!signal.aborted) {
      await node.set('report', { by: id, term, runs: ++runs }, { signal }).catch(() => {});
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 50);
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
    }
    jobLog.push(`${id} stopped the job`);
    console.log(`  [job] ${id} stopped the job (${signal.reason.message})`);
  });

  const app = express();
  app.get('/leader', (_req, res) => res.json({ id, isLeader: node.isLeader, leaderId: node.leaderId, term: node.term }));
  app.get('/report', async (_req, res) => res.json((await node.get('report')) ?? null));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const http = `http://127.0.0.1:${server.address().port}`;
  return {
    id,
    node,
    http,
    async close() {
      await cancelJob();
      await new Promise((r) => server.close(r));
      await node.stop({ transferLeadership: false });
    },
  };
}

const services = await Promise.all(ids.map(startService));
const until = async (check, what) => {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
const ask = async (svc, path) => (await fetch(svc.http + path)).json();

await until(async () => (await Promise.all(services.map((s) => ask(s, '/leader')))).some((r) => r.isLeader), 'a leader');
const views = await Promise.all(services.map((s) => ask(s, '/leader')));
console.log('GET /leader on each app:');
for (const v of views) console.log(`  ${v.id}: isLeader=${v.isLeader} leaderId=${v.leaderId} term=${v.term}`);
const first = services.find((s) => s.node.isLeader);
await until(async () => (await ask(services[0], '/report'))?.runs >= 3, 'three reports');
console.log('GET /report:', JSON.stringify(await ask(services[0], '/report')));

// The leader's service dies (no graceful handoff): the job moves.
console.log(`\nkilling ${first.id} (no handoff)...`);
const killedAt = performance.now();
await first.close();
const rest = services.filter((s) => s !== first);
await until(() => rest.some((s) => s.node.isLeader), 'a new leader');
const second = rest.find((s) => s.node.isLeader);
await until(async () => (await ask(second, '/report'))?.by === second.id, 'the job on the new leader');
console.log(`job moved to ${second.id} in ${(performance.now() - killedAt).toFixed(0)} ms`);
console.log('GET /report:', JSON.stringify(await ask(rest[0], '/report')));

await Promise.all(rest.map((s) => s.close()));
const starts = jobLog.filter((l) => l.includes('started')).length;
if (starts !== 2) throw new Error(`expected the job to start twice, got ${starts}: ${jobLog.join('; ')}`);
console.log('\njob history:');
for (const line of jobLog) console.log(`  ${line}`);
