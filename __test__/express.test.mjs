// raftline/express over real HTTP: the 3-process example service (followers forward writes to
// the leader, metrics parse as Prometheus text, a SIGTERM hands leadership off), then each mode
// of leaderOnly, the probes and the error mapping against an in-process cluster.
import { describe, it, expect, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { copyFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import parsePrometheus from 'parse-prometheus-text-format';
import { RaftError } from '../js/index.js';
import { createTestCluster } from '../js/testing.js';
import { leaderOnly, raftRouter, errorHandler } from '../js/express.js';
import { freePorts, waitFor } from './helpers.mjs';

const service = fileURLToPath(new URL('../examples/express-service.mjs', import.meta.url));

/** js/errors.js loaded a second time from elsewhere, as a second copy of the package is. */
const OtherCopy = (() => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'raftline-copy-'));
  copyFileSync(fileURLToPath(new URL('../js/errors.js', import.meta.url)), path.join(dir, 'errors.js'));
  return createRequire(path.join(dir, 'index.js'))('./errors.js');
})();


/** Like waitFor, and a check that throws (a server not up yet) counts as not yet. */
const until = (what, check, timeoutMs = 15_000) => waitFor(() => check().catch(() => undefined), { timeoutMs, what });

const post = (url, body) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('the 3-process Express service', () => {
  const procs = [];
  afterAll(() => procs.forEach((p) => p.exitCode === null && p.kill('SIGKILL')));

  it('accepts writes on every replica, serves probes and metrics, and survives the leader stopping', async () => {
    const ids = ['api-0', 'api-1', 'api-2'];
    const ports = await freePorts(6);
    const http = ids.map((_, i) => `http://127.0.0.1:${ports[i]}`);
    const peers = ids.map((id, i) => `${id}=ws://127.0.0.1:${ports[3 + i]}`).join(',');
    const exits = ids.map((id, i) => {
      const proc = spawn(process.execPath, [service], {
        env: { ...process.env, ID: id, HTTP_PORT: String(ports[i]), RAFT_PORT: String(ports[3 + i]), PEERS: peers, LISTEN_HOST: '127.0.0.1', RAFT_SECRET: 'test-secret-of-16-bytes' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      procs.push(proc);
      return new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    });
    // Readiness: every replica knows the leader and has applied what it knows committed.
    for (const url of http) await until(`${url}/ready`, async () => (await fetch(`${url}/ready`)).status === 200);
    const health = await fetch(`${http[0]}/health`);
    expect(health.status).toBe(200);

    // A write on each replica: the followers forward it, and the leader applies all three.
    const values = [];
    for (const url of http) {
      const res = await post(`${url}/counter/incr`, { by: 1 });
      expect(res.status).toBe(200);
      values.push((await res.json()).value);
    }
    expect(values).toEqual([1, 2, 3]);
    for (const url of http) await until(`counter 3 at ${url}`, async () => (await (await fetch(`${url}/counter`)).json()).value === 3);

    // Metrics parse as Prometheus text, with the names docs/API.md lists; one replica leads.
    const families = [];
    for (const url of http) {
      const res = await fetch(`${url}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      families.push(parsePrometheus(await res.text()));
    }
    const names = families[0].map((f) => f.name);
    for (const name of ['raftline_term', 'raftline_is_leader', 'raftline_leader_changes_total', 'raftline_elections_total',
      'raftline_proposals_total', 'raftline_proposals_failed_total', 'raftline_commit_index', 'raftline_applied_index',
      'raftline_proposal_duration_seconds', 'raftline_peer_health', 'raftline_bytes_sent_total', 'raftline_bytes_received_total',
      'raftline_log_syncs_total', 'raftline_sessions', 'raftline_locks_held', 'raftline_lock_waiters', 'raftline_session_expiries_total']) {
      expect(names).toContain(name);
    }
    const gauge = (f, name) => Number(f.find((m) => m.name === name).metrics[0].value);
    const leaders = families.map((f) => gauge(f, 'raftline_is_leader'));
    expect(leaders.reduce((a, b) => a + b)).toBe(1);
    const leader = leaders.indexOf(1);
    const histogram = families[leader].find((f) => f.name === 'raftline_proposal_duration_seconds');
    expect(histogram.type).toBe('HISTOGRAM');
    // Forwarded writes run on the leader: it proposed all three.
    expect(Number(histogram.metrics[0].buckets['+Inf'])).toBe(3);
    expect(families.map((f) => gauge(f, 'raftline_proposals_total'))).toEqual(leaders.map((l) => 3 * l));
    expect(families[leader].find((f) => f.name === 'raftline_peer_health').metrics).toHaveLength(2);

    // SIGTERM the leader: it hands off, exits 0, and the others go on taking writes.
    procs[leader].kill('SIGTERM');
    expect(await exits[leader]).toEqual({ code: 0, signal: null });
    const rest = http.filter((_, i) => i !== leader);
    for (const url of rest) {
      await until(`a new leader at ${url}`, async () => {
        const s = await (await fetch(`${url}/status`)).json();
        return s.leaderId !== null && s.leaderId !== ids[leader] && (await fetch(`${url}/ready`)).status === 200;
      });
    }
    for (const url of rest) expect((await post(`${url}/counter/incr`, {})).status).toBe(200);
    expect((await (await fetch(`${rest[0]}/counter`)).json()).value).toBeGreaterThanOrEqual(5);
  }, 60_000);
});

describe('raftline/express in process', () => {
  /** A cluster whose members each serve `app(node)` over HTTP at their advertised httpUrl. */
  async function clusterWithApps(app) {
    const ports = await freePorts(3);
    const cluster = await createTestCluster({ size: 3, httpUrl: (id) => `http://127.0.0.1:${ports[Number(id.slice(1)) - 1]}` });
    const servers = await Promise.all(cluster.nodes.map((node, i) => new Promise((resolve) => {
      const s = app(node).listen(ports[i], '127.0.0.1', () => resolve(s));
    })));
    const leader = await cluster.waitForLeader();
    const follower = cluster.nodes.find((n) => n !== leader);
    // The leader advertises its httpUrl when it connects to each follower.
    await until('the leader httpUrl', async () => cluster.nodes.every((n) => n.status().leaderHttpUrl === leader.status().leaderHttpUrl && n.status().leaderHttpUrl));
    const urlOf = (node) => `http://127.0.0.1:${ports[cluster.nodes.indexOf(node)]}`;
    return {
      cluster, leader, follower, urlOf,
      async close() {
        await Promise.all(servers.map((s) => new Promise((r) => (s.closeAllConnections(), s.close(r)))));
        await cluster.close();
      },
    };
  }

  it('redirects, rejects and forwards a parsed body, and never forwards twice', async () => {
    const app = (node) => {
      const a = express();
      a.post('/redirect', leaderOnly(node, { mode: 'redirect' }), (_req, res) => res.send(node.id));
      a.post('/reject', leaderOnly(node, { mode: 'reject', retryAfterSeconds: 2 }), (_req, res) => res.send(node.id));
      // A body parser before leaderOnly: the body was read, and is sent on as JSON.
      a.post('/echo', express.json(), leaderOnly(node), (req, res) => res.json({ by: node.id, body: req.body, via: req.headers['x-raftline-forwarded-by'] ?? null }));
      return a;
    };
    const t = await clusterWithApps(app);
    try {
      const followerUrl = t.urlOf(t.follower);
      const redirect = await fetch(`${followerUrl}/redirect?x=1`, { method: 'POST', redirect: 'manual' });
      expect(redirect.status).toBe(307);
      expect(redirect.headers.get('location')).toBe(`${t.urlOf(t.leader)}/redirect?x=1`);

      const reject = await fetch(`${followerUrl}/reject`, { method: 'POST' });
      expect(reject.status).toBe(503);
      expect(reject.headers.get('retry-after')).toBe('2');
      expect(await reject.json()).toEqual({ error: { code: 'ERR_NOT_LEADER', message: expect.any(String), leaderId: t.leader.id } });

      const echo = await post(`${followerUrl}/echo`, { a: [1, 'two'], nested: { ok: true } });
      expect(echo.status).toBe(200);
      expect(await echo.json()).toEqual({ by: t.leader.id, body: { a: [1, 'two'], nested: { ok: true } }, via: t.follower.id });

      const twice = await fetch(`${followerUrl}/echo`, { method: 'POST', headers: { 'x-raftline-forwarded-by': 'n9' } });
      expect(twice.status).toBe(503);
    } finally {
      await t.close();
    }
  }, 30_000);

  it('an Idempotency-Key header reaches the leader through forwarding: a retry on another follower applies nothing', async () => {
    const app = (node) => {
      const a = express();
      a.post('/orders', leaderOnly(node), async (req, res, next) => {
        try {
          const r = await node.incr('orders', 1, { idempotencyKey: req.get('idempotency-key') });
          res.json({ by: node.id, count: r.value, duplicate: r.duplicate ?? false });
        } catch (err) {
          next(err);
        }
      });
      return a.use(errorHandler());
    };
    const t = await clusterWithApps(app);
    try {
      const others = t.cluster.nodes.filter((n) => n !== t.leader);
      const order = (node) => fetch(`${t.urlOf(node)}/orders`, { method: 'POST', headers: { 'idempotency-key': 'order-77' } }).then((r) => r.json());
      const first = await order(others[0]);
      const retry = await order(others[1]);
      expect(first).toEqual({ by: t.leader.id, count: 1, duplicate: false });
      expect(retry).toEqual({ by: t.leader.id, count: 1, duplicate: true });
      expect(await t.leader.get('orders')).toBe(1);
    } finally {
      await t.close();
    }
  }, 30_000);

  // Before: the forwarded request stayed open on the leader after its client went away
  // (pipe() propagates neither errors nor closes).
  it('a client that goes away aborts the request forwarded to the leader', async () => {
    const seen = {};
    const app = (node) => {
      const a = express();
      a.get('/slow', leaderOnly(node), (req, res) => {
        seen.receivedBy = node.id;
        const timer = setTimeout(() => res.send('late'), 10_000);
        req.on('close', () => {
          clearTimeout(timer);
          seen.closedOnLeader = node.id;
        });
      });
      return a;
    };
    const t = await clusterWithApps(app);
    try {
      const gone = new AbortController();
      const answer = fetch(`${t.urlOf(t.follower)}/slow`, { signal: gone.signal }).catch((e) => e);
      await until('the leader has the forwarded request', async () => seen.receivedBy === t.leader.id);
      gone.abort(); // the client gives up while the leader is still working on it
      expect((await answer).name).toBe('AbortError');
      await until('the leader saw its request close', async () => seen.closedOnLeader === t.leader.id, 3_000);
    } finally {
      await t.close();
    }
  }, 30_000);

  it('maps RaftErrors to statuses, and the probes follow the node', async () => {
    const app = (node) => {
      const a = express();
      a.use('/raft', raftRouter(node));
      a.get('/fail/:code', (req) => {
        throw new RaftError(req.params.code, 'failed on purpose');
      });
      // A RaftError from a second copy of the package (an application's own and a library's).
      a.get('/fail-copy/:code', (req) => {
        throw new OtherCopy.RaftError(req.params.code, 'from another copy');
      });
      a.get('/plain', () => {
        throw new Error('not raftline');
      });
      a.post('/write', leaderOnly(node, { mode: 'reject' }), async (_req, res) => res.json(await node.set('k', 1, { timeoutMs: 300 })));
      a.use(errorHandler());
      a.use((err, _req, res, _next) => res.status(599).send(err.message));
      return a;
    };
    const t = await clusterWithApps(app);
    try {
      const url = t.urlOf(t.follower);
      const statuses = {};
      for (const code of ['ERR_NO_LEADER', 'ERR_NOT_LEADER', 'ERR_TIMEOUT', 'ERR_CONFLICT', 'ERR_TOO_LARGE', 'ERR_INVALID', 'ERR_STORAGE']) {
        const res = await fetch(`${url}/fail/${code}`);
        statuses[code] = [res.status, res.headers.get('retry-after')];
        expect((await res.json()).error.code).toBe(code);
      }
      expect(statuses).toEqual({
        ERR_NO_LEADER: [503, '1'], ERR_NOT_LEADER: [503, '1'], ERR_TIMEOUT: [504, null], ERR_CONFLICT: [409, null],
        ERR_TOO_LARGE: [413, null], ERR_INVALID: [400, null], ERR_STORAGE: [500, null],
      });
      expect((await fetch(`${url}/plain`)).status).toBe(599); // not ours: passed on
      const copied = await fetch(`${url}/fail-copy/ERR_NO_LEADER`);
      expect([copied.status, (await copied.json()).error.code]).toEqual([503, 'ERR_NO_LEADER']);
      expect(new OtherCopy.RaftError('ERR_TIMEOUT', 'x')).toBeInstanceOf(RaftError);
      expect(new Error('x')).not.toBeInstanceOf(RaftError);

      expect((await fetch(`${url}/raft/ready`)).status).toBe(200);
      const status = await (await fetch(`${url}/raft/status`)).json();
      expect(status).toMatchObject({ id: t.follower.id, role: 'follower', leaderId: t.leader.id });

      // The other two stop: this follower loses its leader, is no longer ready, and writes get 503.
      await Promise.all(t.cluster.nodes.filter((n) => n !== t.follower).map((n) => n.stop({ transferLeadership: false })));
      await until('no leader', async () => t.follower.leaderId === null);
      const notReady = await fetch(`${url}/raft/ready`);
      expect(notReady.status).toBe(503);
      expect((await notReady.json()).ready).toBe(false);
      const write = await post(`${url}/write`, {});
      expect(write.status).toBe(503);
      expect(write.headers.get('retry-after')).toBe('1');
      expect((await write.json()).error.code).toBe('ERR_NO_LEADER');
      expect((await fetch(`${url}/raft/health`)).status).toBe(200);
      await t.follower.stop();
      expect((await fetch(`${url}/raft/health`)).status).toBe(503);
    } finally {
      await t.close();
    }
  }, 30_000);
});
