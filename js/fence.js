'use strict';
// raftline/fence: the resource's side of fencing. A lock's fence (or runWhileLeader's term)
// only protects a resource that checks it: a holder paused past its lock's TTL may wake up and
// write after the next holder did, and only the resource can refuse that write. For
// Postgres (any pg-compatible client): checkFence() inside the caller's transaction records
// the highest fence per resource and refuses an older one, atomically with the write. For
// HTTP: the caller sends FENCE_HEADER, and requireFence() answers 409 to a stale fence.

const { RaftError } = require('./errors.js');
const check = require('./options.js');

const FENCE_HEADER = 'raftline-fence';
const DEFAULT_TABLE = 'raftline_fences';
// A table name, optionally schema-qualified: quoted as given, never interpolated raw.
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/;

function tableOf(opts) {
  const o = check.opts(opts);
  const table = o.table === undefined ? DEFAULT_TABLE : o.table;
  if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
    throw new TypeError(`opts.table must be a table name ([schema.]name of letters, digits and _), got ${JSON.stringify(table)}`);
  }
  return table
    .split('.')
    .map((part) => `"${part}"`)
    .join('.');
}

function checkClient(client) {
  if (client === null || typeof client !== 'object' || typeof client.query !== 'function') {
    throw new TypeError(`client must be a pg client (an object with query()), got ${check.typeName(client)}`);
  }
}

function checkResource(resource) {
  if (typeof resource !== 'string' || resource.length === 0) throw new TypeError(`resource must be a non-empty string, got ${check.typeName(resource)}`);
}

function checkFenceValue(fence, name = 'fence') {
  if (typeof fence !== 'number' || !Number.isInteger(fence)) throw new TypeError(`${name} must be an integer, got ${check.typeName(fence)}`);
  if (fence < 1 || fence > Number.MAX_SAFE_INTEGER) throw new RangeError(`${name} must be a positive safe integer, got ${fence}`);
}

/** Creates the fence table if it does not exist: one row per resource, its highest fence. */
async function ensureFenceTable(client, opts) {
  checkClient(client);
  const table = tableOf(opts);
  await client.query(`CREATE TABLE IF NOT EXISTS ${table} (resource text PRIMARY KEY, fence bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
}

/**
 * Records `fence` for `resource` unless a higher one is recorded, in which case it throws
 * ERR_FENCED: call it inside the transaction that writes to the resource, and roll back on
 * the error. The row it writes stays locked until that transaction ends, so two holders'
 * transactions are ordered by their fences: an older fence can never commit after a newer.
 * The same fence passes again (one holder, many writes).
 */
async function checkFence(client, resource, fence, opts) {
  checkClient(client);
  checkResource(resource);
  checkFenceValue(fence);
  const table = tableOf(opts);
  const result = await client.query(
    `INSERT INTO ${table} AS f (resource, fence) VALUES ($1, $2) ` +
      'ON CONFLICT (resource) DO UPDATE SET fence = EXCLUDED.fence, updated_at = now() WHERE f.fence <= EXCLUDED.fence ' +
      'RETURNING fence',
    [resource, fence],
  );
  if (result.rowCount === 0) {
    const current = await client.query(`SELECT fence FROM ${table} WHERE resource = $1`, [resource]);
    const highest = current.rows.length > 0 ? Number(current.rows[0].fence) : null;
    throw fenced(resource, fence, highest);
  }
}

function fenced(resource, fence, highest) {
  const err = new RaftError('ERR_FENCED', `fence ${fence} for ${JSON.stringify(resource)} is stale: ${highest ?? 'a higher one'} was recorded`);
  return Object.assign(err, { resource, fence, highest });
}

/** The FENCE_HEADER value for `resource` and `fence`: `<resource>=<fence>`. */
function fenceHeader(resource, fence) {
  checkResource(resource);
  checkFenceValue(fence);
  return `${encodeURIComponent(resource)}=${fence}`;
}

/** The highest fence per resource, in this process's memory (requireFence's default store). */
class MemoryFenceStore {
  #highest = new Map();

  /** Records `fence` and resolves true, or false when a higher one was recorded. */
  check(resource, fence) {
    const highest = this.#highest.get(resource) ?? 0;
    if (fence < highest) return false;
    this.#highest.set(resource, fence);
    return true;
  }
}

/**
 * Express middleware for a fenced HTTP resource: the request must carry FENCE_HEADER for
 * `resource(req)`; a fence older than the highest seen is answered 409 with ERR_FENCED, a
 * missing or malformed header 400 with ERR_INVALID.
 */
function requireFence(opts) {
  const o = check.opts(opts);
  if (typeof o.resource !== 'function') throw new TypeError(`opts.resource must be a function (req) => string, got ${check.typeName(o.resource)}`);
  const store = o.store === undefined ? new MemoryFenceStore() : o.store;
  if (store === null || typeof store !== 'object' || typeof store.check !== 'function') {
    throw new TypeError(`opts.store must have check(resource, fence), got ${check.typeName(store)}`);
  }
  return (req, res, next) => {
    let resource;
    try {
      resource = o.resource(req);
      checkResource(resource);
    } catch (err) {
      next(err);
      return;
    }
    const header = req.headers[FENCE_HEADER];
    const match = typeof header === 'string' ? /^(.+)=([0-9]{1,16})$/.exec(header) : null;
    const fence = match ? Number(match[2]) : NaN;
    if (!match || decodeSafely(match[1]) !== resource || !Number.isSafeInteger(fence) || fence < 1) {
      answer(res, 400, 'ERR_INVALID', `the ${FENCE_HEADER} header must be ${JSON.stringify(`${encodeURIComponent(resource)}=<fence>`)}`);
      return;
    }
    Promise.resolve()
      .then(() => store.check(resource, fence))
      .then(
        (ok) => {
          if (ok) next();
          else answer(res, 409, 'ERR_FENCED', `fence ${fence} for ${JSON.stringify(resource)} is stale`);
        },
        (err) => next(err),
      );
  };
}

function decodeSafely(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

function answer(res, status, code, message) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify({ error: { code, message } }));
}

module.exports = { FENCE_HEADER, ensureFenceTable, checkFence, fenceHeader, requireFence, MemoryFenceStore };
