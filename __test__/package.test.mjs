// The package as users get it: `npm pack` of raftline and of its linux-x64-gnu binary package,
// installed into a fresh Express app with a PATH that has node and npm only (no cargo, no
// protoc, no shell): nothing builds at install time, require and import work, the types
// compile under every moduleResolution, the Express example serves, and a platform without
// a binary gets an error that names it.
import { describe, it, expect, beforeAll, afterAll, onTestFinished } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { platformId } from '../js/native.js';
import { freePorts } from './helpers.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const id = platformId();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'raftline-pack-'));
const app = path.join(work, 'app');
const bin = path.join(work, 'bin');
let env;


function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

beforeAll(() => {
  // node and npm, nothing else.
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  const npmCli = fs.realpathSync(run('sh', ['-c', 'command -v npm']).trim());
  fs.symlinkSync(npmCli, path.join(bin, 'npm'));
  env = { ...process.env, PATH: bin };
  delete env.PROTOC;
  // The binary package gets the local build (CI publishes the glibc 2.17 one instead).
  const platformDir = path.join(work, id);
  fs.cpSync(path.join(root, 'npm', id), platformDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'js', `raftline.${id}.node`), path.join(platformDir, `raftline.${id}.node`));
  const packed = [];
  for (const dir of [root, platformDir]) {
    const out = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: dir }));
    packed.push(out[0]);
  }
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  const express = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/express/package.json'), 'utf8')).version;
  const types = ['@types/node', '@types/express', 'typescript'].map((name) => `${name}@${JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version}`);
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...packed.map((p) => path.join(work, p.filename)), `express@${express}`, ...types], { cwd: app, env });
  globalThis.packed = packed;
}, 240_000);

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('the packed package', () => {
  it('holds the JS, types, README and LICENSE, no binary, and builds nothing at install', () => {
    const [main, platform] = globalThis.packed;
    const files = main.files.map((f) => f.path).sort();
    for (const f of ['LICENSE', 'README.md', 'index.d.ts', 'js/index.js', 'js/index.mjs', 'js/express.js', 'js/express.d.ts', 'js/testing.d.ts', 'js/native.js']) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => f.endsWith('.node'))).toEqual([]);
    expect(platform.files.map((f) => f.path)).toContain(`raftline.${id}.node`);
    const installed = JSON.parse(fs.readFileSync(path.join(app, 'node_modules/raftline/package.json'), 'utf8'));
    expect(installed.scripts).toBeUndefined();
    expect(installed.optionalDependencies[`@raftline/${id}`]).toBe(installed.version);
    // The checkout's manifest is back as it was.
    expect(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.prepare).toBeDefined();
    expect(() => run('sh', ['-c', 'command -v cargo || command -v protoc'], { env })).toThrow();
  });

  it('installs the operators\' command line: `npx raftline` runs it', () => {
    const npx = path.join(app, 'node_modules', '.bin', 'raftline');
    expect(fs.existsSync(npx)).toBe(true);
    expect(run(npx, ['help'], { cwd: app, env })).toMatch(/raftline inspect <dataDir>/);
  });

  it('loads with require and import, and its types compile under node10, node16, nodenext and bundler', () => {
    const cjs = run('node', ['-e', "const r = require('raftline'); const t = require('raftline/testing'); const e = require('raftline/express'); console.log(typeof r.RaftNode, typeof t.createTestCluster, typeof e.leaderOnly)"], { cwd: app, env });
    expect(cjs.trim()).toBe('function function function');
    const esm = run('node', ['--input-type=module', '-e', "import { RaftNode } from 'raftline'; import { createTestCluster } from 'raftline/testing'; import { raftRouter } from 'raftline/express'; console.log(typeof RaftNode, typeof createTestCluster, typeof raftRouter)"], { cwd: app, env });
    expect(esm.trim()).toBe('function function function');
    fs.writeFileSync(path.join(app, 'consumer.ts'), [
      "import { RaftNode, RaftError, type NodeStatus } from 'raftline';",
      "import { createTestCluster } from 'raftline/testing';",
      "import { leaderOnly, raftRouter, errorHandler } from 'raftline/express';",
      "import express from 'express';",
      "const node = new RaftNode({ id: 'a', httpUrl: 'http://a:8080' });",
      'const app = express();',
      'app.use(raftRouter(node));',
      "app.post('/w', leaderOnly(node, { mode: 'forward' }), (_req, res) => { res.end(); });",
      'app.use(errorHandler());',
      'const s: NodeStatus = node.status();',
      'const m: string = node.metrics();',
      "export const used = [s, m, RaftError, createTestCluster];",
      '',
    ].join('\n'));
    for (const [moduleResolution, module] of [['node10', 'commonjs'], ['node16', 'node16'], ['nodenext', 'nodenext'], ['bundler', 'esnext']]) {
      const args = ['node_modules/typescript/bin/tsc', '--strict', '--noEmit', '--esModuleInterop', '--target', 'es2022', '--module', module, '--moduleResolution', moduleResolution, '--types', 'node', 'consumer.ts'];
      try {
        run('node', args, { cwd: app, env });
      } catch (err) {
        throw new Error(`tsc under moduleResolution ${moduleResolution}: ${err.stdout}${err.stderr}`);
      }
    }
  }, 120_000);

  it('runs the Express example from the installed package', async () => {
    fs.copyFileSync(path.join(root, 'examples/express-service.mjs'), path.join(app, 'service.mjs'));
    const [httpPort, raftPort] = await freePorts(2);
    const proc = spawn('node', ['service.mjs'], {
      cwd: app,
      env: { ...env, ID: 'solo', PEERS: `solo=ws://127.0.0.1:${raftPort}`, HTTP_PORT: String(httpPort), RAFT_PORT: String(raftPort), LISTEN_HOST: '127.0.0.1', RAFT_SECRET: 'a-secret-of-16-bytes' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    const exited = new Promise((resolve) => proc.on('exit', resolve));
    onTestFinished(() => proc.exitCode === null && proc.kill('SIGKILL'));
    const deadline = Date.now() + 20_000;
    while (!/http on/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const base = `http://127.0.0.1:${httpPort}`;
    while (Date.now() < deadline && (await fetch(`${base}/ready`).then((r) => r.status, () => 0)) !== 200) await new Promise((r) => setTimeout(r, 20));
    const incr = await fetch(`${base}/counter/incr`, { method: 'POST' });
    expect(await incr.json()).toMatchObject({ value: 1, by: 'solo' });
    proc.kill('SIGTERM');
    const code = await exited;
    expect(out).toMatch(/\[solo\] http on/);
    expect(code).toBe(0);
  }, 30_000);

  it('names the platform and what to do when no binary fits', () => {
    fs.rmSync(path.join(app, 'node_modules/@raftline'), { recursive: true, force: true });
    let message = '';
    try {
      run('node', ['-e', "require('raftline')"], { cwd: app, env });
    } catch (err) {
      message = err.stderr;
    }
    expect(message).toContain(`raftline cannot load its native addon on ${id}`);
    expect(message).toContain(`@raftline/${id} is not installed`);
  });
});
