// Day two: backups taken while writes run and restored into a new cluster, damaged backups
// refused, a survivor of a lost quorum restarted alone and grown back, and the operators'
// command line (`npx raftline inspect|backup|restore`), all over real files and sockets.
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PassThrough } from 'node:stream';
import { RaftNode } from 'raftline';
import { createTestCluster } from 'raftline/testing';
import { freePorts, waitFor } from './helpers.mjs';

const run = promisify(execFile);
const CLI = path.join(import.meta.dirname, '..', 'js', 'cli.js');
const cleanup = [];
afterEach(async () => {
  for (const done of cleanup.splice(0).reverse()) await done();
});

function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'raftline-backup-'));
  cleanup.push(() => fs.promises.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function cluster(opts) {
  const c = await createTestCluster({ size: 3, ...opts });
  cleanup.push(() => c.close());
  return c;
}

/** Starts the members of `peers` on their data directories under `root`; resolves with them once one leads. */
async function startRestored(root, peers) {
  const nodes = Object.keys(peers).map((id) => new RaftNode({ id, peers, dataDir: path.join(root, id), electionTimeoutMs: 150 }));
  cleanup.push(() => Promise.all(nodes.map((n) => n.stop())));
  await Promise.all(nodes.map((n) => n.start()));
  await waitFor(() => nodes.some((n) => n.isLeader), { what: 'a leader in the restored cluster' });
  return nodes;
}

async function peersOnFreePorts(ids) {
  const ports = await freePorts(ids.length);
  return Object.fromEntries(ids.map((id, i) => [id, `ws://127.0.0.1:${ports[i]}`]));
}

/** Every key with its revisions, in key order. */
async function everything(node) {
  const out = [];
  let after;
  for (;;) {
    const page = await node.entries({ limit: 500, after });
    if (page.length === 0) return out;
    for (const [key] of page) out.push([key, await node.getEntry(key, { consistency: 'local' })]);
    after = page[page.length - 1][0];
  }
}

describe('backup and restore', () => {
  it('a backup from a follower while writes run holds every write acknowledged before it, and a new cluster restored from it holds every key and revision', async () => {
    const c = await cluster({ dataDir: tempDir() });
    const leader = await c.waitForLeader();
    const follower = c.nodes.find((n) => n !== leader);
    const session = await leader.session({ ttlMs: 60_000 });
    await leader.set('owned', 'by a session', { session });

    // Phase 1: writers on every member: new keys and overwrites.
    const acked = [];
    let stop = false;
    const writers = c.nodes.map(async (node, w) => {
      for (let i = 0; !stop; i++) {
        const key = `w${w}-${i % 300}`;
        const r = await node.set(key, { w, i }).catch(() => null);
        if (r) acked.push([key, r.index]);
      }
    });
    await waitFor(() => acked.length > 1000, { what: '1,000 writes' });

    // Phase 2: the backup, to a file, mid-stream.
    const file = path.join(tempDir(), 'state.backup');
    const before = acked.slice();
    const result = await follower.backup(file);
    await waitFor(() => acked.length > before.length + 200, { what: 'writes after the backup' });
    stop = true;
    await Promise.all(writers);
    expect(result.bytes).toBe(fs.statSync(file).size);
    expect(result.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
    expect(acked.some(([, index]) => index > result.index)).toBe(true);

    // Phase 3: a new cluster of three restores the same file, then starts.
    const root = tempDir();
    const peers = await peersOnFreePorts(['a', 'b', 'c']);
    for (const id of Object.keys(peers)) await RaftNode.restore(file, { dataDir: path.join(root, id), id, peers });
    const restored = await startRestored(root, peers);
    const state = await everything(restored[1]);
    const byKey = new Map(state);
    for (const [key, index] of before) {
      const entry = byKey.get(key);
      expect(entry, key).toBeDefined();
      expect(entry.modIndex).toBeGreaterThanOrEqual(index);
    }
    expect(state.every(([, e]) => e.modIndex <= result.index)).toBe(true);
    // Every member of the new cluster holds the same keys and revisions.
    for (const node of restored) {
      await waitFor(() => node.status().appliedIndex >= result.index, { what: `${node.id} applied the backup` });
      expect(await everything(node)).toEqual(state);
    }
    // The session's key came along; the new cluster goes on after the backup's index.
    expect(byKey.get('owned').value).toBe('by a session');
    const next = await restored[0].set('after', 1);
    expect(next.index).toBeGreaterThan(result.index);
  }, 60_000);

  it('a backup goes to a writable stream too, and is ended there', async () => {
    const c = await cluster({});
    const leader = await c.waitForLeader();
    await leader.set('k', 'v');
    const stream = new PassThrough();
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    const result = await leader.backup(stream);
    const bytes = Buffer.concat(chunks);
    expect(stream.writableEnded).toBe(true);
    expect(bytes.length).toBe(result.bytes);
    expect(crypto.createHash('sha256').update(bytes).digest('hex')).toBe(result.sha256);
    // The bytes restore as well as a file does.
    const root = tempDir();
    const peers = await peersOnFreePorts(['solo']);
    await RaftNode.restore(bytes, { dataDir: path.join(root, 'solo'), id: 'solo', peers });
    const [solo] = await startRestored(root, peers);
    expect(await solo.get('k')).toBe('v');
  });

  it('a backup with a flipped byte, or cut short, is refused and writes nothing', async () => {
    const c = await cluster({});
    const leader = await c.waitForLeader();
    for (let i = 0; i < 50; i++) await leader.set(`k${i}`, 'x'.repeat(100));
    const dir = tempDir();
    const file = path.join(dir, 'good.backup');
    await leader.backup(file);
    const good = fs.readFileSync(file);
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length / 2)] ^= 1;
    const peers = { a: 'ws://127.0.0.1:1' };
    for (const [what, bytes] of [['flipped', flipped], ['cut', good.subarray(0, good.length - 7)], ['empty', Buffer.alloc(0)]]) {
      const dataDir = path.join(dir, what);
      const err = await RaftNode.restore(bytes, { dataDir, id: 'a', peers }).catch((e) => e);
      expect(err.code, what).toBe('ERR_INVALID');
      expect(err.message).toMatch(/not a usable backup/);
      expect(fs.existsSync(dataDir), what).toBe(false);
    }
    // Nor into a directory that holds files, nor from a file that is not there.
    fs.mkdirSync(path.join(dir, 'used'));
    fs.writeFileSync(path.join(dir, 'used', 'x'), 'x');
    await expect(RaftNode.restore(file, { dataDir: path.join(dir, 'used'), id: 'a', peers })).rejects.toMatchObject({ code: 'ERR_INVALID', message: expect.stringMatching(/not empty/) });
    await expect(RaftNode.restore(path.join(dir, 'missing'), { dataDir: path.join(dir, 'new'), id: 'a', peers })).rejects.toMatchObject({ code: 'ERR_INVALID' });
  });

  it('bad arguments throw TypeError naming them', async () => {
    const c = await cluster({ size: 1 });
    const node = await c.waitForLeader();
    await expect(node.backup(42)).rejects.toThrow(/dest must be a file path or a writable stream/);
    await expect(node.backup('')).rejects.toThrow(TypeError);
    await expect(node.backup('/tmp/x', { timeoutMs: -1 })).rejects.toThrow(RangeError);
    const peers = { a: 'ws://127.0.0.1:1' };
    await expect(RaftNode.restore(42, { dataDir: '/tmp/x', id: 'a', peers })).rejects.toThrow(/backup must be the path/);
    await expect(RaftNode.restore('f', { dataDir: '', id: 'a', peers })).rejects.toThrow(/opts.dataDir/);
    await expect(RaftNode.restore('f', { dataDir: '/tmp/x', id: 'a b', peers })).rejects.toThrow(/opts.id/);
    await expect(RaftNode.restore('f', { dataDir: '/tmp/x', id: 'a', peers: { a: 'http://x' } })).rejects.toThrow(/opts.peers\["a"\]/);
    await expect(RaftNode.restore('f', { dataDir: '/tmp/x', id: 'z', peers })).rejects.toThrow(/opts.id \(z\) included/);
    await expect(RaftNode.restore('f', { dataDir: '/tmp/x', id: 'a', peers, extra: 1 })).rejects.toThrow(/opts.extra/);
    expect(() => new RaftNode({ id: 'a', forceNewCluster: true })).toThrow(/forceNewCluster needs options.dataDir/);
    expect(() => new RaftNode({ id: 'a', dataDir: '/tmp/x', join: true, peers: { b: 'ws://127.0.0.1:1' }, forceNewCluster: true })).toThrow(/cannot be combined with options.join/);
    expect(() => new RaftNode({ id: 'a', dataDir: '/tmp/x', forceNewCluster: 'yes' })).toThrow(/options.forceNewCluster must be a boolean/);
  });

  it('a node whose application keeps its own state machine refuses a backup that would lack it', async () => {
    const c = await cluster({ size: 1, snapshotHooks: { save: () => Buffer.alloc(0), restore() {} } });
    const node = await c.waitForLeader();
    await expect(node.backup(path.join(tempDir(), 'x'))).rejects.toMatchObject({ code: 'ERR_INVALID', message: expect.stringMatching(/state machine of its own/) });
  });
});

describe('a data directory', () => {
  it('records its member: another id is refused, the same id starts again', async () => {
    const dataDir = path.join(tempDir(), 'a');
    const a = new RaftNode({ id: 'a', dataDir });
    await a.start();
    await waitFor(() => a.isLeader, { what: 'a leading' });
    await a.set('k', 1);
    await a.stop();
    const b = new RaftNode({ id: 'b', dataDir });
    await expect(b.start()).rejects.toMatchObject({ code: 'ERR_INVALID', message: expect.stringMatching(/belongs to member "a", not "b"/) });
    expect(fs.readFileSync(path.join(dataDir, 'raftline.meta'), 'utf8')).toBe('format 1\nnode a\n');
    const again = new RaftNode({ id: 'a', dataDir });
    cleanup.push(() => again.stop());
    await again.start();
    await waitFor(() => again.isLeader, { what: 'a leading again' });
    expect(await again.get('k')).toBe(1);
  });
});

describe('recovery from a lost quorum', () => {
  it('two of three members lose their data; the survivor restarts alone with every acknowledged write and grows back to three', async () => {
    const root = tempDir();
    const c = await cluster({ dataDir: root, timing: 'default' });
    const leader = await c.waitForLeader();
    // Phase 1: acknowledged writes.
    const acked = new Map();
    await Promise.all(c.nodes.map(async (node, w) => {
      for (let i = 0; i < 150; i++) {
        await node.set(`k${w}-${i % 60}`, i);
        acked.set(`k${w}-${i % 60}`, i);
      }
    }));
    // Phase 2: every member dies; two lose their data for good.
    const survivor = leader.id;
    for (const node of c.nodes) await c.kill(node.id);
    const lost = c.nodes.map((n) => n.id).filter((id) => id !== survivor);
    for (const id of lost) fs.rmSync(path.join(root, id), { recursive: true });

    // Phase 3: the survivor restarts as a new cluster of itself, keeping its data.
    const port = (await freePorts(1))[0];
    const url = `ws://127.0.0.1:${port}`;
    const alone = new RaftNode({ id: survivor, peers: { [survivor]: url }, dataDir: path.join(root, survivor), forceNewCluster: true, logLevel: 'off' });
    cleanup.push(() => alone.stop());
    await alone.start();
    await waitFor(() => alone.isLeader, { what: 'the survivor leading alone' });
    expect(alone.members().map((m) => m.id)).toEqual([survivor]);
    for (const [key, value] of acked) expect(await alone.get(key), key).toBe(value);
    await alone.set('after-recovery', true);

    // Phase 4: the lost members come back empty, as learners, and are promoted.
    const ports = await freePorts(lost.length);
    const back = [];
    for (const [i, id] of lost.entries()) {
      const joiner = new RaftNode({ id, peers: { [survivor]: url, [id]: `ws://127.0.0.1:${ports[i]}` }, dataDir: path.join(root, id), join: true });
      cleanup.push(() => joiner.stop());
      await joiner.start();
      await alone.addMember(id, joiner.url, { learner: true });
      await waitFor(() => alone.members().find((m) => m.id === id)?.health === 'healthy', { what: `${id} caught up` });
      await alone.promoteMember(id);
      back.push(joiner);
    }
    expect(alone.members().filter((m) => m.voter).length).toBe(3);
    for (const joiner of back) {
      await waitFor(async () => (await joiner.get('after-recovery').catch(() => undefined)) === true, { what: `${joiner.id} has the data` });
      for (const [key, value] of acked) expect(joiner.getLocal(key)).toBe(value);
    }
  }, 60_000);
});

describe('the command line', () => {
  it('inspects a stopped member, backs it up and restores it into a directory a node starts from', async () => {
    const root = tempDir();
    const c = await cluster({ dataDir: root, size: 1 });
    const node = await c.waitForLeader();
    for (let i = 0; i < 30; i++) await node.set(`k${i}`, i);
    await c.close();

    // inspect, for people and for scripts
    const dir = path.join(root, 'n1');
    const text = (await run('node', [CLI, 'inspect', dir])).stdout;
    expect(text).toMatch(/member\s+n1/);
    expect(text).toMatch(/30 keys/);
    const json = JSON.parse((await run('node', [CLI, 'inspect', dir, '--json'])).stdout);
    expect(json).toMatchObject({ node: 'n1', format: 1, keys: 30, members: [{ id: 'n1', voter: true }] });
    expect(json.appliedIndex).toBe(json.commitIndex);
    expect(json.commitIndex).toBe(json.lastIndex);

    // backup, then restore into a new directory
    const file = path.join(root, 'n1.backup');
    const made = JSON.parse((await run('node', [CLI, 'backup', dir, file, '--json'])).stdout);
    expect(made.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
    expect(made.index).toBe(json.commitIndex);
    const peers = await peersOnFreePorts(['x']);
    const target = path.join(root, 'restored');
    const restored = JSON.parse((await run('node', [CLI, 'restore', file, path.join(target, 'x'), '--id', 'x', '--peers', `x=${peers.x}`, '--json'])).stdout);
    expect(restored.index).toBe(made.index);
    const [x] = await startRestored(target, peers);
    expect(await x.get('k29')).toBe(29);

    // a running member's directory is refused, bad usage exits 2, a failure 1
    const inUse = await run('node', [CLI, 'inspect', path.join(target, 'x')]).catch((e) => e);
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toMatch(/in use by another node/);
    const usage = await run('node', [CLI, 'restore', file]).catch((e) => e);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/usage:/);
    const missing = await run('node', [CLI, 'inspect', path.join(root, 'nothing')]).catch((e) => e);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not a raftline data directory/);
  }, 30_000);
});
