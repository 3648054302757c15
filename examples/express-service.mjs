// One replica of an Express service that embeds a raftline node: a replicated counter that any
// replica accepts (followers forward writes to the leader), with health, readiness, status and
// Prometheus metrics. Run three of them, or the StatefulSet in examples/kubernetes/.
//
//   export RAFT_SECRET=$(openssl rand -hex 32)   # once: every replica proves the same one
//   ID=api-0 HTTP_PORT=8080 RAFT_PORT=7000 \
//   PEERS=api-0=ws://127.0.0.1:7000,api-1=ws://127.0.0.1:7001,api-2=ws://127.0.0.1:7002 \
//   node examples/express-service.mjs
//
// On Kubernetes the id is the pod's name (POD_NAME) and the peers are the StatefulSet's stable
// DNS names (REPLICAS, SERVICE, NAMESPACE); they are resolved again on every reconnect, so a
// rescheduled pod with a new IP is found. SIGTERM stops gracefully: leadership is handed off.
import express from 'express';
import { RaftNode } from 'raftline';
import { leaderOnly, raftRouter, errorHandler } from 'raftline/express';

const env = process.env;
const id = env.ID ?? env.POD_NAME;
if (!id) throw new Error('set ID (or POD_NAME)');
const httpPort = Number(env.HTTP_PORT ?? 8080);
const raftPort = Number(env.RAFT_PORT ?? 7000);

/** `a=ws://h:1,b=ws://h:2`, or the StatefulSet's pods `<set>-0 .. <set>-(REPLICAS-1)`. */
function peersFromEnv() {
  if (env.PEERS) return Object.fromEntries(env.PEERS.split(',').map((pair) => pair.split(/=(.*)/s).slice(0, 2)));
  const set = id.replace(/-\d+$/, '');
  const replicas = Number(env.REPLICAS ?? 3);
  const domain = `${env.SERVICE ?? set}.${env.NAMESPACE ?? 'default'}.svc.cluster.local`;
  return Object.fromEntries(Array.from({ length: replicas }, (_, i) => [`${set}-${i}`, `ws://${set}-${i}.${domain}:${raftPort}`]));
}

const node = new RaftNode({
  id,
  peers: peersFromEnv(),
  listen: `${env.LISTEN_HOST ?? '0.0.0.0'}:${raftPort}`,
  secret: env.RAFT_SECRET,
  dataDir: env.DATA_DIR,
  // Where this replica serves HTTP, as the other replicas can reach it.
  httpUrl: env.HTTP_URL ?? `http://${env.POD_IP ?? '127.0.0.1'}:${httpPort}`,
  logLevel: env.LOG_LEVEL ?? 'warn',
});
node.on('error', (err) => console.error(`[${id}] ${err.code}: ${err.message}`));

const app = express();
app.use(raftRouter(node)); // GET /health /ready /status /metrics
app.get('/counter', async (_req, res) => res.json({ value: (await node.get('counter')) ?? 0 }));
app.post('/counter/incr', leaderOnly(node), express.json(), async (req, res) => {
  const { value, index } = await node.incr('counter', req.body?.by ?? 1);
  res.json({ value, index, by: id });
});
app.use(errorHandler());

await node.start();
const server = app.listen(httpPort, env.LISTEN_HOST ?? '0.0.0.0', () => {
  console.log(`[${id}] http on ${httpPort}, raft on ${raftPort}`);
});

let stopping = false;
process.on('SIGTERM', async () => {
  if (stopping) return;
  stopping = true;
  await node.stop(); // hands leadership to another replica first
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
});
