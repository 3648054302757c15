// Engine log lines as a log collector sees them: stderr is a pipe, so plain text without
// colour codes, and every line of the raft crate names the member (not a numeric id).
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../js/index.js', import.meta.url));
const child = `
const { RaftNode } = require(${JSON.stringify(entry)});
(async () => {
  const node = new RaftNode({ id: 'logger-test', logLevel: 'debug' });
  await node.start();
  await node.waitForLeader();
  await node.set('k', 1);
  await node.stop();
})();
`;

describe('engine logs', () => {
  it('are plain text on a pipe, and raft-crate lines carry the member name', async () => {
    const proc = spawn(process.execPath, ['-e', child], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => proc.on('exit', resolve));
    expect(code).toBe(0);
    const raftLines = stderr.split('\n').filter((l) => /\braft: /.test(l));
    expect(raftLines.length).toBeGreaterThan(0); // e.g. "became leader at term 2"
    for (const line of raftLines) expect(line).toMatch(/node="?logger-test"?/);
    expect(stderr).not.toMatch(/\x1b\[/);
  }, 30_000);
});
