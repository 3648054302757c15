// Engine logs per node: each node has its own level, lines go to its `logger` or else to stderr
// as plain text (a log collector's pipe: no colour codes), and every line names its member.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RaftNode } from '../js/index.js';

const entry = fileURLToPath(new URL('../js/index.js', import.meta.url));

/** Runs `body` in a child process with RaftNode in scope; resolves its exit code and output. */
function runChild(body) {
  const source = `const { RaftNode } = require(${JSON.stringify(entry)});\n(async () => {\n${body}\n})();`;
  const proc = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => proc.on('exit', (code) => resolve({ code, stdout, stderr })));
}

function collector() {
  const lines = [];
  const at = (level) => (fields, message) => lines.push({ level, fields, message });
  return { lines, logger: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') } };
}

describe('engine logs', () => {
  it('follow each node: a logger, stderr at its own level, or nothing', async () => {
    const { code, stdout, stderr } = await runChild(`
      const lines = [];
      const at = (level) => (fields, message) => lines.push({ level, fields, message });
      const logger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
      const nodes = [
        new RaftNode({ id: 'to-logger', logLevel: 'debug', logger }),
        new RaftNode({ id: 'to-stderr', logLevel: 'debug' }),
        new RaftNode({ id: 'silent', logLevel: 'off' }),
      ];
      for (const node of nodes) {
        await node.start();
        await node.waitForLeader();
        await node.set('k', 1);
      }
      for (const node of nodes) await node.stop();
      process.stdout.write(JSON.stringify(lines));
    `);
    expect(code).toBe(0);
    // The node with a logger: its lines there, as structured fields, and none on stderr.
    const logged = JSON.parse(stdout);
    expect(logged.some((l) => l.fields.target === 'raft' && /became leader/.test(l.message))).toBe(true);
    for (const line of logged) {
      expect(line.fields.node).toBe('to-logger');
      expect(['error', 'warn', 'info', 'debug']).toContain(line.level);
    }
    // The node without one: plain lines on stderr, each naming it; the silent node: nothing.
    const lines = stderr.split('\n').filter((l) => l.length > 0);
    const raftLines = lines.filter((l) => /\braft node=/.test(l));
    expect(raftLines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z +[A-Z]+ \S+ node="to-stderr"/);
    expect(stderr).not.toContain('\u001b['); // no colour codes
  }, 30_000);

  it('a logger that throws is reported as an error event, and the node lives on', async () => {
    let calls = 0;
    const throwing = () => {
      calls += 1;
      throw new Error('logger broke');
    };
    const node = new RaftNode({
      id: 'bad-logger',
      logLevel: 'debug',
      logger: { error: throwing, warn: throwing, info: throwing, debug: throwing },
    });
    const errors = [];
    node.on('error', (err) => errors.push(err));
    await node.start();
    await node.waitForLeader();
    await node.set('k', 1);
    const deadline = Date.now() + 5000;
    while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(calls).toBeGreaterThan(0);
    expect(errors[0].code).toBe('ERR_CALLBACK');
    expect(errors[0].cause.message).toBe('logger broke');
    expect(await node.get('k')).toBe(1);
    await node.stop();
  });

  it('two nodes in one process keep their own levels', async () => {
    const verbose = collector();
    const quiet = collector();
    const a = new RaftNode({ id: 'verbose', logLevel: 'debug', logger: verbose.logger });
    const b = new RaftNode({ id: 'quiet', logLevel: 'error', logger: quiet.logger });
    await Promise.all([a.start(), b.start()]);
    await Promise.all([a.waitForLeader(), b.waitForLeader()]);
    await Promise.all([a.set('k', 1), b.set('k', 1)]);
    const deadline = Date.now() + 5000;
    while (!verbose.lines.some((l) => l.level === 'debug') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await Promise.all([a.stop(), b.stop()]);
    expect(verbose.lines.some((l) => l.level === 'debug')).toBe(true);
    expect(quiet.lines.filter((l) => l.level !== 'error')).toEqual([]);
  });

  it('refuses a logger without the four methods', () => {
    expect(() => new RaftNode({ id: 'x', logger: console.log })).toThrow(/options\.logger\.error must be a function/);
    expect(() => new RaftNode({ id: 'x', logger: { error() {}, warn() {}, info() {} } })).toThrow(TypeError);
    expect(() => new RaftNode({ id: 'x', logger: null })).toThrow(/options\.logger must be an object/);
  });
});
