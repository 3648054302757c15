#!/usr/bin/env node
'use strict';
// raftline's command line for operators (`npx raftline ...`): reads a stopped member's data
// directory, backs it up, restores a backup into a new one. People read the default output;
// scripts pass --json. Exit status: 0 done, 1 failed (the reason on stderr), 2 bad usage.

const path = require('node:path');
const operations = require('./operations.js');

const USAGE = `usage:
  raftline inspect <dataDir> [--json]            what a stopped member's data directory holds
  raftline backup <dataDir> <file> [--json]      back it up (at its commit index) to <file>
  raftline restore <file> <dataDir> --id <name> --peers <name=url,...> [--json]
                                                 seed a new member's data directory from a
                                                 backup (every member restores the same file)
  raftline help`;

class UsageError extends Error {}

/** Splits argv into positional arguments and --flags (`--name value`, or `--json`). */
function parse(argv) {
  const positional = [];
  /** @type {Record<string, string | true>} */
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json' || arg === '--help' || arg === '-h') flags[arg.replace(/^-+/, '')] = true;
    else if (arg.startsWith('--')) {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`${arg} needs a value`);
      flags[arg.slice(2)] = value;
      i++;
    } else positional.push(arg);
  }
  return { positional, flags };
}

/** `a=ws://h:1,b=ws://h:2` -> { a: 'ws://h:1', b: 'ws://h:2' } */
function peersOf(text) {
  /** @type {Record<string, string>} */
  const peers = {};
  for (const part of String(text).split(',').filter(Boolean)) {
    const at = part.indexOf('=');
    if (at <= 0) throw new UsageError(`--peers takes name=url pairs separated by commas, got ${JSON.stringify(part)}`);
    peers[part.slice(0, at)] = part.slice(at + 1);
  }
  return peers;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** Aligned `label  value` lines. */
function table(rows) {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

function describe(dir, s) {
  const members = s.members.map((m) => `${m.id} ${m.url || '(url unknown)'} (${m.voter ? 'voter' : 'learner'})`);
  const rows = [
    ['data directory', dir],
    ['format', String(s.format)],
    ['member', s.node || '(not recorded)'],
    ['term', `${s.term}${s.vote ? ` (voted for ${s.vote})` : ''}`],
    ['commit index', String(s.commitIndex)],
    ['log', s.lastIndex >= s.firstIndex ? `entries ${s.firstIndex} to ${s.lastIndex}` : 'no entries after the snapshot'],
    ['snapshot', s.snapshotIndex == null ? 'none' : `index ${s.snapshotIndex}, term ${s.snapshotTerm}, ${bytes(s.snapshotBytes)}`],
    [`state at ${s.appliedIndex}`, `${s.keys} keys, ${s.sessions} sessions, ${s.locks} locks held`],
    ['members', members[0] ?? '(none)'],
    ...members.slice(1).map((m) => ['', m]),
  ];
  return table(rows);
}

async function main(argv) {
  const { positional, flags } = parse(argv);
  const [command, ...args] = positional;
  const json = flags.json === true;
  const out = (value, text) => process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text}\n`);
  if (!command || command === 'help' || flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return command || flags.help ? 0 : 2;
  }
  const expect = (n, what) => {
    if (args.length !== n) throw new UsageError(`${command} takes ${what}`);
  };
  switch (command) {
    case 'inspect': {
      expect(1, '<dataDir>');
      const dir = path.resolve(args[0]);
      const s = await operations.inspect(dir);
      out({ dataDir: dir, ...s }, describe(dir, s));
      return 0;
    }
    case 'backup': {
      expect(2, '<dataDir> <file>');
      const file = path.resolve(args[1]);
      const r = await operations.backupDataDir(path.resolve(args[0]), file);
      out({ file, ...r }, table([['backup', file], ['index', `${r.index} (term ${r.term})`], ['size', bytes(r.bytes)], ['sha256', r.sha256]]));
      return 0;
    }
    case 'restore': {
      expect(2, '<file> <dataDir> --id <name> --peers <name=url,...>');
      if (typeof flags.id !== 'string' || typeof flags.peers !== 'string') throw new UsageError('restore needs --id and --peers');
      const dataDir = path.resolve(args[1]);
      const { index, term } = await operations.restoreInto(path.resolve(args[0]), { dataDir, id: flags.id, peers: peersOf(flags.peers) });
      out({ dataDir, index, term, id: flags.id }, `restored ${args[0]} into ${dataDir} for member ${flags.id} (state at index ${index}); start it with dataDir: ${JSON.stringify(dataDir)}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`raftline: ${err.message}\n${USAGE}\n`);
      process.exitCode = 2;
      return;
    }
    const code = err && err.code ? ` (${err.code})` : '';
    process.stderr.write(`raftline: ${err && err.message ? err.message : err}${code}\n`);
    process.exitCode = 1;
  },
);
