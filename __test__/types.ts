// Compiled by `tsc -p __test__` in `npm test`: the public types accept correct use and
// reject misspelt events and fields.
import { RaftNode, RaftError, type LeaderChangeEvent, type WriteResult } from 'raftline';
import { createTestCluster } from 'raftline/testing';
import { leaderOnly, raftRouter, errorHandler } from 'raftline/express';
import { checkFence, ensureFenceTable, FENCE_HEADER, fenceHeader, requireFence, type PgLike } from 'raftline/fence';
import express from 'express';

export async function typed(): Promise<void> {
  const node = new RaftNode({ id: 'n1', peers: { n1: 'ws://127.0.0.1:7001' }, heartbeatMs: 10 });
  node.on('leaderChange', (e) => {
    const term: number = e.term;
    const leader: string | null = e.leaderId;
    void term;
    void leader;
  });
  node.on('change', (e) => e.key.toUpperCase());
  node.on('error', (err) => err.code === 'ERR_STORAGE');
  // @ts-expect-error misspelt event name
  node.on('leaderChanged', (e: LeaderChangeEvent) => e.term);
  // @ts-expect-error misspelt payload field
  node.on('leaderChange', (e) => e.leaderID);
  const off = node.onLeaderChange((e) => e.isLeader);
  off();

  const w: WriteResult = await node.set('k', { a: [1, 'two', null], b: Buffer.from('x') });
  const d = await node.delete('k');
  const existed: boolean = d.existed;
  const c = await node.cas('k', undefined, 1);
  const ok: boolean = c.ok;
  await node.batch([{ op: 'set', key: 'a', value: 1 }, { op: 'delete', key: 'b' }]);
  await node.update<number>('counter', (prev) => (prev ?? 0) + 1);
  const v = await node.get<{ a: number }>('k', { consistency: 'lease' });
  const n: number | undefined = v?.a;
  // @ts-expect-error unknown consistency
  await node.get('k', { consistency: 'eventual' });
  // Revisions, paging, transactions.
  const entry = await node.getEntry<{ host: string }>('cfg', { consistency: 'local' });
  const revision: number | undefined = entry && entry.modIndex + entry.createIndex + entry.version;
  const host: string | undefined = entry?.value.host;
  const page: Array<[string, unknown]> = await node.entries({ prefix: 'cfg/', limit: 100, after: 'cfg/a' });
  const t = await node.txn({
    if: [{ key: 'cfg', modIndex: revision ?? 0 }, { key: 'lock', exists: false }, { key: 'x', value: [1] }],
    then: [{ op: 'set', key: 'cfg', value: 2 }, { op: 'get', key: 'cfg' }],
    else: [{ op: 'delete', key: 'cfg' }],
  });
  const txnOk: boolean = t.succeeded && t.index > 0;
  // @ts-expect-error a comparison needs its key
  await node.txn({ if: [{ exists: true }] });
  // @ts-expect-error no such operation
  await node.txn({ then: [{ op: 'put', key: 'a', value: 1 }] });
  void [host, page, txnOk, t.results];
  const once = await node.incr('orders', 1, { idempotencyKey: 'order-1' });
  const dup: true | undefined = once.duplicate;
  const txnDup: true | undefined = (await node.txn({ then: [] }, { idempotencyKey: 't-1' })).duplicate;
  // @ts-expect-error the key is a string
  await node.set('k', 1, { idempotencyKey: 7 });
  void [dup, txnDup];
  // Backups and restore.
  const backup = await node.backup('/backups/state.backup', { timeoutMs: 10_000 });
  const digest: string = backup.sha256;
  const size: number = backup.bytes + backup.index + backup.term;
  await node.backup(process.stdout);
  // @ts-expect-error a destination is a path or a stream
  await node.backup(42);
  await RaftNode.restore('/backups/state.backup', { dataDir: '/data/a', id: 'a', peers: { a: 'ws://a:7000' } });
  // @ts-expect-error restore needs the new cluster's members
  await RaftNode.restore('/backups/state.backup', { dataDir: '/data/a', id: 'a' });
  void new RaftNode({ id: 'a', dataDir: '/data/a', forceNewCluster: true });
  void [digest, size];
  for await (const change of node.watch({ prefix: 'k' })) {
    const op: 'set' | 'delete' = change.op;
    void op;
    break;
  }
  for await (const item of node.watch({ prefix: 'k', fromIndex: 0 })) {
    if (item.op === 'resync') {
      const pairs: Array<[string, unknown]> = item.entries;
      void pairs;
    } else {
      const key: string = item.key;
      void key;
    }
    break;
  }
  const cancel = node.runWhileLeader(async ({ signal, term }) => {
    void term;
    await new Promise((resolve) => signal.addEventListener('abort', resolve));
  });
  await cancel();
  try {
    await node.set('k', 1, { forward: false });
  } catch (err) {
    if (err instanceof RaftError && err.code === 'ERR_NOT_LEADER') void err.leaderId;
  }
  const cluster = await createTestCluster({ size: 3, timing: 'fast' });
  const leader: RaftNode = await cluster.waitForLeader();
  cluster.partition([leader.id], ['n2']);
  cluster.heal();
  await cluster.close();
  void [w, existed, ok, n];

  const app = express();
  app.use(raftRouter(node));
  app.post('/w', leaderOnly(node, { mode: 'redirect', retryAfterSeconds: 2 }), (_req, res) => res.end());
  app.use(errorHandler());
  // @ts-expect-error not a mode
  leaderOnly(node, { mode: 'proxy' });
  const text: string = node.metrics();
  const m = node.metricsJson();
  const sum: number = m.proposalDuration.sumSeconds + m.peers.length;
  const leaderHttp: string | null = node.status().leaderHttpUrl;
  const logged = new RaftNode({
    id: 'n2',
    logger: { error: () => {}, warn: () => {}, info: () => {}, debug: (fields, message) => fields.node + message },
  });
  void [text, sum, leaderHttp, logged];

  // Coordination: sessions, locks, fences.
  await using session = await node.session({ ttlMs: 5000 });
  const sid: string = session.id;
  session.signal.addEventListener('abort', () => session.signal.reason as RaftError);
  const lock = await node.lock('tenant-1', { session, timeoutMs: 1000 });
  const fence: number = lock.fence;
  await lock.release();
  const maybe = await node.tryLock('tenant-2', { ttlMs: 2000 });
  if (maybe) await maybe.release();
  // @ts-expect-error tryLock may give null
  void (await node.tryLock('x')).fence;
  const total: number = await node.withLock('tenant-3', async ({ fence: f, signal }) => (signal.aborted ? 0 : f));
  // @ts-expect-error the session option is a Session, not its id
  await node.lock('x', { session: sid });
  const pg: PgLike = { query: async () => ({ rowCount: 1, rows: [] }) };
  await ensureFenceTable(pg, { table: 'fences' });
  await checkFence(pg, 'invoices', fence);
  const header: Record<string, string> = { [FENCE_HEADER]: fenceHeader('invoices', fence) };
  app.put('/r', requireFence({ resource: (req) => req.url ?? '' }), (_req, res) => res.end());
  void [total, header];
  try {
    await checkFence(pg, 'invoices', 1);
  } catch (err) {
    if (err instanceof RaftError && err.code === 'ERR_FENCED') void err.message;
  }
}
