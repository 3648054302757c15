'use strict';
// Backups and restore (docs/API.md, "Operations"). The engine makes a backup's bytes (at a
// linearizable index, or from a stopped member's data directory) and checks and restores
// them; this file writes them where the caller asked, durably, and hashes them.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const native = require('./native.js');
const check = require('./options.js');
const { settled } = require('./core.js');
const { RaftError } = require('./errors.js');

/**
 * Where a backup goes: a file path, or a writable stream.
 * @param {unknown} dest
 * @returns {string | NodeJS.WritableStream}
 */
function destination(dest) {
  if (typeof dest === 'string') {
    if (dest.length === 0) throw new TypeError('dest must be a non-empty path or a writable stream, got ""');
    return path.resolve(dest);
  }
  const stream = /** @type {any} */ (dest);
  if (stream !== null && typeof stream === 'object' && typeof stream.write === 'function' && typeof stream.end === 'function' && typeof stream.once === 'function') {
    return stream;
  }
  throw new TypeError(`dest must be a file path or a writable stream, got ${check.typeName(dest)}`);
}

/** Writes `data` to `file` as a whole or not at all: a temporary file, fsynced, renamed. */
async function writeDurably(file, data) {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  const handle = await fs.promises.open(tmp, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  const dir = await fs.promises.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Writes `data` to `stream` and ends it; resolves once it finished (rejects on its error). */
function writeToStream(stream, data) {
  return new Promise((resolve, reject) => {
    const failed = (err) => reject(err);
    stream.once('error', failed);
    stream.once('finish', () => {
      stream.removeListener('error', failed);
      resolve(undefined);
    });
    stream.end(data);
  });
}

/**
 * Puts a backup's bytes at `dest`.
 * @param {{ index: number, term: number, data: Buffer }} made
 * @param {string | NodeJS.WritableStream} dest
 */
async function deliver(made, dest) {
  const sha256 = crypto.createHash('sha256').update(made.data).digest('hex');
  try {
    if (typeof dest === 'string') await writeDurably(dest, made.data);
    else await writeToStream(dest, made.data);
  } catch (err) {
    const where = typeof dest === 'string' ? dest : 'the stream';
    throw new RaftError('ERR_STORAGE', `cannot write the backup to ${where}: ${/** @type {Error} */ (err).message}`, { cause: err });
  }
  return { index: made.index, term: made.term, bytes: made.data.length, sha256 };
}

/**
 * node.backup(dest, opts): a backup at a linearizable index, from any member.
 * @param {import('./core.js').NodeCore} core
 * @param {unknown} dest
 * @param {unknown} opts
 */
async function backup(core, dest, opts) {
  const where = destination(dest);
  const o = check.opts(opts);
  const timeoutMs = check.timeout(o.timeoutMs);
  const signal = check.signal(o.signal);
  const made = await core.call((n) => n.backup(timeoutMs), signal);
  return deliver(made, where);
}

/**
 * A backup of the stopped member's data directory `dataDir`, at its commit index.
 * @param {string} dataDir
 * @param {unknown} dest
 */
async function backupDataDir(dataDir, dest) {
  const where = destination(dest);
  return deliver(settled(await native.backupDataDir(path.resolve(dataDir))), where);
}

/** The bytes of a backup given as a path or as bytes. */
async function backupBytes(backup) {
  if (backup instanceof Uint8Array) return Buffer.from(backup.buffer, backup.byteOffset, backup.byteLength);
  if (typeof backup !== 'string' || backup.length === 0) {
    throw new TypeError(`backup must be the path of a backup file (or its bytes), got ${check.typeName(backup)}`);
  }
  try {
    return await fs.promises.readFile(backup);
  } catch (err) {
    throw new RaftError('ERR_INVALID', `cannot read the backup ${backup}: ${/** @type {Error} */ (err).message}`, { cause: err });
  }
}

/**
 * Seeds a new data directory (RaftNode.restore, which resolves with nothing, and the command
 * line); resolves with the backup's index and term.
 * @param {unknown} backup
 * @param {unknown} opts
 * @returns {Promise<{ index: number, term: number }>}
 */
async function restoreInto(backup, opts) {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object { dataDir, id, peers }, got ${check.typeName(opts)}`);
  const o = /** @type {Record<string, unknown>} */ (opts);
  for (const k of Object.keys(o)) {
    if (!['dataDir', 'id', 'peers'].includes(k)) throw new TypeError(`opts.${k} is not a restore option (dataDir, id, peers)`);
  }
  if (typeof o.dataDir !== 'string' || o.dataDir.length === 0) {
    throw new TypeError(`opts.dataDir must be a non-empty path string, got ${JSON.stringify(o.dataDir)}`);
  }
  const id = check.memberName('opts.id', o.id);
  const peers = check.peerUrls('opts.peers', o.peers);
  if (!(id in peers)) throw new TypeError(`opts.peers must name every member of the new cluster, opts.id (${id}) included`);
  const data = await backupBytes(backup);
  return settled(await native.restoreBackup(data, path.resolve(o.dataDir), id, peers));
}

/**
 * RaftNode.restore(backup, { dataDir, id, peers }): seeds a new data directory.
 * @param {unknown} backup
 * @param {unknown} opts
 */
async function restore(backup, opts) {
  await restoreInto(backup, opts);
}

/**
 * What a stopped member's data directory holds.
 * @param {string} dataDir
 */
async function inspect(dataDir) {
  return settled(await native.inspectDataDir(path.resolve(dataDir)));
}

module.exports = { backup, backupDataDir, restore, restoreInto, inspect };
