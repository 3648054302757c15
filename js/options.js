'use strict';
// Validation of RaftNode options and of method arguments. Errors name the argument.

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const WS_URL = /^wss?:\/\/[^\s/:]+(:\d{1,5})?(\/\S*)?$/;
const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace', 'off'];
const KNOWN = new Set([
  'id', 'peers', 'listen', 'dataDir', 'join', 'clusterId', 'secret', 'tls', 'heartbeatMs',
  'electionTimeoutMs', 'preVote', 'checkQuorum', 'snapshotEvery', 'maxProposalBytes', 'maxPendingWrites',
  'logLevel', 'logger', 'httpUrl', 'snapshotHooks', 'insecure', 'recordChanges', 'forceNewCluster',
]);

function typeName(v) {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

function integer(name, v, min, max) {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`${name} must be an integer, got ${typeName(v)}`);
  }
  if (v < min || v > max) throw new RangeError(`${name} must be between ${min} and ${max}, got ${v}`);
  return v;
}

function boolean(name, v) {
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeName(v)}`);
  return v;
}

function memberName(name, v) {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${typeName(v)}`);
  if (!NAME.test(v)) throw new TypeError(`${name} must be 1-64 characters of [A-Za-z0-9._-], got ${JSON.stringify(v)}`);
  return v;
}

function hostPort(name, v) {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a 'host:port' string, got ${typeName(v)}`);
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m) throw new TypeError(`${name} must be 'host:port', got ${JSON.stringify(v)}`);
  integer(`${name} port`, Number(m[2]), 0, 65535);
  return v;
}

/**
 * A map of member name -> ws:// or wss:// URL (with `allowEmpty`, '' for a URL learnt later).
 * @param {string} name
 * @param {unknown} v
 * @returns {Record<string, string>}
 */
function peerUrls(name, v, allowEmpty = false) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`${name} must be an object of name -> ws:// URL, got ${typeName(v)}`);
  }
  /** @type {Record<string, string>} */
  const peers = {};
  for (const [member, url] of Object.entries(v)) {
    memberName(`${name} key ${JSON.stringify(member)}`, member);
    if (typeof url !== 'string' || !(WS_URL.test(url) || (allowEmpty && url === ''))) {
      throw new TypeError(`${name}[${JSON.stringify(member)}] must be a ws:// or wss:// URL, got ${JSON.stringify(url)}`);
    }
    peers[member] = url;
  }
  return peers;
}

/**
 * Checks user options; returns what the binding takes plus the timing the JS layer uses.
 * @param {unknown} options
 * @param {{ allowUnknownUrls?: boolean }} internal
 */
function validateOptions(options, internal = {}) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${typeName(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`options.${key} is not a RaftNode option`);
  }
  // Checked field by field below, against what index.d.ts's RaftNodeOptions says.
  const o = /** @type {Record<string, any>} */ (options);
  const id = memberName('options.id', o.id);
  const peers = o.peers === undefined ? {} : peerUrls('options.peers', o.peers, internal.allowUnknownUrls);
  const heartbeatMs = o.heartbeatMs === undefined ? 50 : integer('options.heartbeatMs', o.heartbeatMs, 1, 60_000);
  const electionTimeoutMs =
    o.electionTimeoutMs === undefined ? Math.max(150, heartbeatMs * 3) : integer('options.electionTimeoutMs', o.electionTimeoutMs, 2, 600_000);
  if (electionTimeoutMs <= heartbeatMs) {
    throw new RangeError(`options.electionTimeoutMs (${electionTimeoutMs}) must be greater than options.heartbeatMs (${heartbeatMs})`);
  }
  if (o.clusterId !== undefined && (typeof o.clusterId !== 'string' || o.clusterId.length === 0 || o.clusterId.length > 256)) {
    throw new TypeError(`options.clusterId must be a string of 1-256 characters, got ${JSON.stringify(o.clusterId)}`);
  }
  if (o.logLevel !== undefined && !LOG_LEVELS.includes(o.logLevel)) {
    throw new TypeError(`options.logLevel must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(o.logLevel)}`);
  }
  if (o.logger !== undefined) {
    if (o.logger === null || typeof o.logger !== 'object' && typeof o.logger !== 'function') {
      throw new TypeError(`options.logger must be an object with error, warn, info and debug methods, got ${typeName(o.logger)}`);
    }
    for (const method of ['error', 'warn', 'info', 'debug']) {
      if (typeof o.logger[method] !== 'function') throw new TypeError(`options.logger.${method} must be a function, got ${typeName(o.logger[method])}`);
    }
  }
  if (o.httpUrl !== undefined && (typeof o.httpUrl !== 'string' || !/^https?:\/\/[\x21-\x7e]+$/.test(o.httpUrl) || o.httpUrl.length > 256)) {
    throw new TypeError(`options.httpUrl must be an http:// or https:// URL of at most 256 printable ASCII characters, got ${JSON.stringify(o.httpUrl)}`);
  }
  if (o.snapshotEvery !== undefined) integer('options.snapshotEvery', o.snapshotEvery, 1, Number.MAX_SAFE_INTEGER);
  if (o.snapshotHooks !== undefined) {
    const h = o.snapshotHooks;
    if (h === null || typeof h !== 'object' || typeof h.save !== 'function' || typeof h.restore !== 'function') {
      throw new TypeError('options.snapshotHooks must be { save(): Buffer, restore(data: Buffer): void }');
    }
  }
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir.length === 0)) {
    throw new TypeError(`options.dataDir must be a non-empty path string, got ${JSON.stringify(o.dataDir)}`);
  }
  const native = {
    id,
    peers,
    listen: o.listen === undefined ? undefined : hostPort('options.listen', o.listen),
    clusterId: o.clusterId,
    heartbeatMs,
    electionTimeoutMs,
    preVote: o.preVote === undefined ? true : boolean('options.preVote', o.preVote),
    checkQuorum: o.checkQuorum === undefined ? true : boolean('options.checkQuorum', o.checkQuorum),
    maxProposalBytes: o.maxProposalBytes === undefined ? 1 << 20 : integer('options.maxProposalBytes', o.maxProposalBytes, 1, 32 << 20),
    maxPendingWrites: o.maxPendingWrites === undefined ? 65_536 : integer('options.maxPendingWrites', o.maxPendingWrites, 1, 1 << 20),
    logLevel: o.logLevel ?? 'warn',
    httpUrl: o.httpUrl,
    dataDir: o.dataDir === undefined ? undefined : require('node:path').resolve(o.dataDir),
    snapshotEvery: o.snapshotEvery,
    appSnapshots: o.snapshotHooks !== undefined,
    recordChanges: o.recordChanges === undefined ? false : boolean('options.recordChanges', o.recordChanges),
    join: o.join === undefined ? false : boolean('options.join', o.join),
    forceNewCluster: o.forceNewCluster === undefined ? false : boolean('options.forceNewCluster', o.forceNewCluster),
    secret: o.secret === undefined ? undefined : secret(o.secret),
    insecure: o.insecure === undefined ? false : boolean('options.insecure', o.insecure),
    emulatePowerLoss: false,
    ...(o.tls === undefined ? {} : tls(o.tls)),
  };
  const scheme = o.tls === undefined ? 'ws://' : 'wss://';
  for (const [name, url] of Object.entries(peers)) {
    if (url !== null && url !== '' && !url.startsWith(scheme)) {
      throw new TypeError(`options.peers.${name} must be a ${scheme} URL ${o.tls === undefined ? '(wss:// needs options.tls)' : 'with options.tls'}, got ${JSON.stringify(url)}`);
    }
  }
  if (native.forceNewCluster && native.dataDir === undefined) {
    throw new TypeError('options.forceNewCluster needs options.dataDir: it restarts a member from the data it kept');
  }
  if (native.forceNewCluster && native.join) {
    throw new TypeError('options.forceNewCluster cannot be combined with options.join: it starts a new cluster of this member alone');
  }
  if (native.join && !Object.keys(peers).some((name) => name !== id)) {
    throw new TypeError('options.peers must name the members to join (with their URLs) when options.join is true');
  }
  return { native, electionTimeoutMs, httpUrl: o.httpUrl ?? null, snapshotHooks: o.snapshotHooks ?? null, logger: o.logger ?? null };
}

function pem(name, v) {
  if (typeof v === 'string') v = Buffer.from(v, 'utf8');
  else if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a PEM string or Buffer, got ${typeName(v)}`);
  if (v.length === 0 || v.length > 1 << 20) throw new RangeError(`${name} must hold 1 byte to 1 MiB of PEM, got ${v.length}`);
  return Buffer.from(v);
}

function tls(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`options.tls must be an object { cert, key, ca? }, got ${typeName(v)}`);
  }
  for (const k of Object.keys(v)) {
    if (!['cert', 'key', 'ca'].includes(k)) throw new TypeError(`options.tls.${k} is not a TLS option (cert, key, ca)`);
  }
  return {
    tlsCert: pem('options.tls.cert', v.cert),
    tlsKey: pem('options.tls.key', v.key),
    tlsCa: v.ca === undefined ? undefined : pem('options.tls.ca', v.ca),
  };
}

function secret(v) {
  if (typeof v !== 'string') throw new TypeError(`options.secret must be a string, got ${typeName(v)}`);
  const bytes = Buffer.byteLength(v, 'utf8');
  if (bytes < 16 || bytes > 1024) {
    throw new RangeError(`options.secret must be 16-1024 bytes, got ${bytes} (generate one: openssl rand -hex 32)`);
  }
  return v;
}

/** Strings reach the engine as UTF-8: a lone surrogate would arrive altered. */
function wellFormed(v, name) {
  if (!v.isWellFormed()) throw new TypeError(`${name} contains a lone surrogate (not valid UTF-16); it would reach the engine altered`);
}

function key(v, name = 'key') {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${typeName(v)}`);
  wellFormed(v, name);
  const bytes = Buffer.byteLength(v, 'utf8');
  if (bytes === 0 || bytes > 4096) throw new RangeError(`${name} must be 1-4096 bytes of UTF-8, got ${bytes}`);
  return v;
}

/** A write's idempotency key (1-256 bytes of UTF-8), or undefined. */
function idempotencyKey(v, name = 'opts.idempotencyKey') {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${typeName(v)}`);
  wellFormed(v, name);
  const bytes = Buffer.byteLength(v, 'utf8');
  if (bytes === 0 || bytes > 256) throw new RangeError(`${name} must be 1-256 bytes of UTF-8, got ${bytes}`);
  return v;
}

/** A key prefix: any string ('' for all keys), as valid UTF-16. */
function prefix(v, name = 'opts.prefix') {
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${typeName(v)}`);
  wellFormed(v, name);
  return v;
}

function timeout(v, name = 'opts.timeoutMs', fallback = 5000) {
  if (v === undefined) return fallback;
  return integer(name, v, 1, 2 ** 31 - 1);
}

function signal(v, name = 'opts.signal') {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw new TypeError(`${name} must be an AbortSignal, got ${typeName(v)}`);
  return v;
}

function opts(v, name = 'opts') {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object') throw new TypeError(`${name} must be an object, got ${typeName(v)}`);
  return v;
}

module.exports = { validateOptions, peerUrls, key, prefix, idempotencyKey, wellFormed, timeout, signal, opts, integer, boolean, memberName, typeName };
