// Lifecycle: start/stop, ports, process lifetime, module formats, AbortSignal.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { RaftNode, RaftError } from 'raftline';
import { createTestCluster } from 'raftline/testing';
import { freePorts } from './helpers.mjs';

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function single(extra = {}) {
  return new RaftNode({ id: 'solo', listen: '127.0.0.1:0', heartbeatMs: 10, electionTimeoutMs: 50, ...extra });
}

describe('lifecycle', () => {
  it('start binds and reports address and url; stop releases the port at once', async () => {
    const node = single();
    expect(node.address).toBeNull();
    expect(node.role).toBe('follower');
    await node.start();
    expect(node.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(node.url).toBe(`ws://${node.address}`);
    expect(await node.waitForLeader()).toBe('solo');
    const port = Number(node.address.split(':')[1]);
    const stopped = new Promise((r) => node.once('stopped', r));
    const term = node.term;
    expect(term).toBeGreaterThan(0);
    await node.stop();
    await stopped;
    expect(node.role).toBe('stopped');
    expect(node.term).toBe(term); // terms never go back, not even on stop
    expect(node.isLeader).toBe(false);
    // The same port binds again right away, by a plain server and by a new node.
    await new Promise((resolve, reject) => {
      const server = net.createServer().once('error', reject).listen(port, '127.0.0.1', () => server.close(resolve));
    });
    const again = single({ listen: `127.0.0.1:${port}` });
    await again.start();
    expect(again.address).toBe(`127.0.0.1:${port}`);
    await again.stop();
  });

  it('stop() during start() stops what start() started and releases the port', async () => {
    const [port] = await freePorts(1);
    const node = single({ listen: `127.0.0.1:${port}` });
    const started = node.start();
    const stopped = node.stop();
    await started; // it did start...
    await stopped; // ...and was then stopped, with nothing left running
    expect(node.role).toBe('stopped');
    await expect(node.set('k', 1)).rejects.toMatchObject({ code: 'ERR_STOPPED' });
    await new Promise((resolve, reject) => {
      const server = net.createServer().once('error', reject).listen(port, '127.0.0.1', () => server.close(resolve));
    });
  });

  it('writes and reads issued right after start wait for the first leader', async () => {
    const c = await createTestCluster({ size: 3 });
    try {
      // No waitForLeader: each node is asked at once, before any election.
      const written = await Promise.all(c.nodes.map((n, i) => n.set(`early${i}`, i)));
      expect(written.every((w) => w.index > 0)).toBe(true);
      expect(await c.nodes[2].get('early0')).toBe(0);
      // Without a leader in reach, the wait ends at the deadline with ERR_NO_LEADER.
      const lone = single({ id: 'lone', join: true, peers: { ghost: 'ws://127.0.0.1:9' } });
      await lone.start();
      const t0 = Date.now();
      await expect(lone.set('k', 1, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ERR_NO_LEADER' });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
      await lone.stop();
    } finally {
      await c.close();
    }
  });

  it('test clusters draw a secret of their own, which their members prove to each other', async () => {
    const a = await createTestCluster({ size: 1 });
    const b = await createTestCluster({ size: 1, secret: 'given-secret-16b' });
    try {
      expect(a.secret).toMatch(/^[0-9a-f]{32}$/);
      expect(b.secret).toBe('given-secret-16b');
      await a.waitForLeader();
      await b.waitForLeader();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a taken port rejects ERR_ADDR_IN_USE and leaves nothing running', async () => {
    const server = net.createServer();
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address();
    const node = single({ listen: `127.0.0.1:${port}` });
    await expect(node.start()).rejects.toMatchObject({ name: 'RaftError', code: 'ERR_ADDR_IN_USE' });
    expect(node.role).toBe('stopped');
    await new Promise((r) => server.close(r));
  });

  it('stop is idempotent, start twice is refused, and a stopped node refuses work with ERR_STOPPED', async () => {
    const node = single();
    await node.stop(); // never started: fine
    const other = single();
    await other.start();
    await expect(other.start()).rejects.toMatchObject({ code: 'ERR_INVALID' });
    await Promise.all([other.stop(), other.stop()]);
    await other.stop();
    await expect(other.set('k', 1)).rejects.toMatchObject({ code: 'ERR_STOPPED' });
    await expect(other.get('k')).rejects.toMatchObject({ code: 'ERR_STOPPED' });
    expect(() => other.getLocal('k')).toThrow(RaftError);
    await expect(other.waitForLeader()).rejects.toMatchObject({ code: 'ERR_STOPPED' });
  });

  it('Symbol.asyncDispose stops the node', async () => {
    // `await using` needs Node 22 syntax; this is what it calls.
    const node = single();
    await node.start();
    const port = node.address;
    await node[Symbol.asyncDispose]();
    expect(node.role).toBe('stopped');
    const again = single({ listen: port });
    await again.start();
    await again.stop();
  });

  it('a child process that starts a cluster, writes and stops it exits by itself within 5 s', async () => {
    const started = Date.now();
    const child = spawn(process.execPath, [fixture('child-cluster.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('did not exit within 5 s');
      }, 5000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(0);
    expect(out).toContain('closed');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('works through require() and import alike (plain Node)', async () => {
    const child = spawn(process.execPath, [fixture('formats.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ same: true, isInstance: true });
  });
});

describe('AbortSignal', () => {
  it('an aborted signal rejects with AbortError, before or during the call', async () => {
    const node = single();
    await node.start();
    await node.waitForLeader();
    try {
      const pre = AbortSignal.abort();
      await expect(node.set('k', 1, { signal: pre })).rejects.toMatchObject({ name: 'AbortError' });
      await expect(node.get('k', { signal: pre })).rejects.toMatchObject({ name: 'AbortError' });
      const ac = new AbortController();
      const pending = node.set('k2', 1, { signal: ac.signal });
      ac.abort();
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
      await expect(node.set('k3', 1, { signal: 'nope' })).rejects.toThrow(TypeError);
      // The reason is kept: before, an AbortSignal.timeout() reason became a bare AbortError.
      const timeout = AbortSignal.timeout(1);
      await new Promise((resolve) => timeout.addEventListener('abort', resolve));
      const mine = new Error('shutting down');
      for (const [signal, cause] of [[timeout, timeout.reason], [AbortSignal.abort(mine), mine]]) {
        for (const call of [() => node.set('k5', 1, { signal }), () => node.get('k', { signal }), () => node.waitForLeader({ signal })]) {
          const err = await call().catch((e) => e);
          expect(err).toMatchObject({ name: 'AbortError' });
          expect(err.cause).toBe(cause);
        }
      }
      expect(timeout.reason.name).toBe('TimeoutError');
    } finally {
      await node.stop();
    }
  });
});

describe('errors', () => {
  it('invalid arguments throw TypeError/RangeError naming the argument; limits reject with codes', async () => {
    const node = single({ maxProposalBytes: 64 });
    await node.start();
    await node.waitForLeader();
    try {
      await expect(node.set('', 1)).rejects.toThrow(/key/);
      await expect(node.set('', 1)).rejects.toBeInstanceOf(RangeError);
      await expect(node.set(5, 1)).rejects.toBeInstanceOf(TypeError);
      await expect(node.set('k', undefined)).rejects.toThrow(/value/);
      await expect(node.set('k', () => 1)).rejects.toThrow(TypeError);
      await expect(node.set('k', 1, { timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
      await expect(node.get('k', { consistency: 'eventual' })).rejects.toThrow(/consistency/);
      await expect(node.batch([{ op: 'put', key: 'k' }])).rejects.toThrow(/ops\[0\]\.op/);
      await expect(node.propose('not a buffer')).rejects.toThrow(/data/);
      await expect(node.set('k', 'x'.repeat(100))).rejects.toMatchObject({ code: 'ERR_TOO_LARGE' });
      expect(() => node.runWhileLeader(42)).toThrow(/job/);
      expect(() => node.onLeaderChange(null)).toThrow(/cb/);
    } finally {
      await node.stop();
    }
  });
});
