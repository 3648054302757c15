'use strict';
// raftline/express: leader-only routes, health/readiness/status/metrics endpoints and an error
// handler for Express (4 or 5) services that embed a RaftNode. Plain middleware functions:
// nothing here imports express itself.

const http = require('node:http');
const https = require('node:https');
const { pipeline } = require('node:stream');
const { RaftError } = require('./errors.js');
const check = require('./options.js');

/** Marks a request one member forwarded to another: it is never forwarded again. */
const FORWARDED = 'x-raftline-forwarded-by';
const MODES = ['forward', 'redirect', 'reject'];
// Headers that describe one connection, not the request (RFC 9110, 7.6.1).
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'host',
]);

/** RaftError code -> HTTP status, for errorHandler and the answers of leaderOnly. */
const STATUS_OF = {
  ERR_NO_LEADER: 503,
  ERR_NOT_LEADER: 503,
  ERR_STOPPED: 503,
  ERR_REMOVED: 503,
  ERR_OVERLOADED: 503,
  ERR_TIMEOUT: 504,
  ERR_CONFLICT: 409,
  ERR_TOO_LARGE: 413,
  ERR_INVALID: 400,
  ERR_UNKNOWN_MEMBER: 404,
  ERR_CONF_CHANGE_IN_PROGRESS: 409,
};

function sendError(res, err, retryAfterSeconds) {
  const status = STATUS_OF[err.code] ?? 500;
  if (status === 503) res.setHeader('Retry-After', String(retryAfterSeconds));
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  const body = { error: { code: err.code, message: err.message } };
  if (err.leaderId) body.error.leaderId = err.leaderId;
  res.end(JSON.stringify(body));
}

function requireNode(node) {
  if (node === null || typeof node !== 'object' || typeof node.status !== 'function' || typeof node.metrics !== 'function') {
    throw new TypeError('node must be a RaftNode');
  }
}

/** `Retry-After` of the 503 answers, in seconds (default 1). */
function retryAfter(o) {
  return o.retryAfterSeconds === undefined ? 1 : check.integer('opts.retryAfterSeconds', o.retryAfterSeconds, 0, 3600);
}

function options(opts) {
  const o = check.opts(opts);
  const mode = o.mode ?? 'forward';
  if (!MODES.includes(mode)) throw new TypeError(`opts.mode must be one of ${MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  return { mode, retryAfterSeconds: retryAfter(o), timeoutMs: check.timeout(o.timeoutMs, 'opts.timeoutMs', 10_000) };
}

/**
 * Routes a request to the leader: on the leader `next()`, on a follower forward it to the leader's
 * advertised `httpUrl` (default), answer 307 to it, or answer 503 with `Retry-After`.
 */
function leaderOnly(node, opts) {
  requireNode(node);
  const o = options(opts);
  return function raftlineLeaderOnly(req, res, next) {
    // The role, not the lease: a write needs a leader, not a confirmed lease, and a leader
    // whose lease is still being confirmed must not forward to itself.
    const { role, leaderId, leaderHttpUrl } = node.status();
    if (role === 'leader' || leaderId === node.id) return next();
    const refuse = (message) => {
      const code = leaderId ? 'ERR_NOT_LEADER' : 'ERR_NO_LEADER';
      sendError(res, new RaftError(code, message, leaderId ? { leaderId } : undefined), o.retryAfterSeconds);
    };
    if (o.mode === 'reject') return refuse(`${node.id} is not the leader`);
    if (req.headers[FORWARDED]) return refuse(`forwarded by ${req.headers[FORWARDED]}, but ${node.id} is not the leader (any more)`);
    if (!leaderHttpUrl) {
      return refuse(leaderId ? `the leader ${leaderId} has not advertised an httpUrl to ${node.id}` : 'no leader is known');
    }
    const target = new URL(req.originalUrl ?? req.url, leaderHttpUrl.endsWith('/') ? leaderHttpUrl : `${leaderHttpUrl}/`);
    if (o.mode === 'redirect') {
      res.statusCode = 307;
      res.setHeader('Location', target.href);
      return res.end();
    }
    forward(req, res, target, node.id, o, refuse);
  };
}

/** The request's body, if a body parser read it already (the stream is then used up). */
function parsedBody(req) {
  if (!req.readableEnded && req._body !== true) return undefined;
  const body = req.body;
  if (body === undefined) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  return Buffer.from(JSON.stringify(body));
}

function forward(req, res, target, from, o, refuse) {
  /** @type {import('node:http').OutgoingHttpHeaders} */
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
  headers[FORWARDED] = from;
  const forwardedFor = req.socket && req.socket.remoteAddress;
  if (forwardedFor) headers['x-forwarded-for'] = req.headers['x-forwarded-for'] ? `${req.headers['x-forwarded-for']}, ${forwardedFor}` : forwardedFor;
  const body = parsedBody(req);
  if (body !== undefined) {
    headers['content-length'] = String(body.length);
    if (req.body !== undefined && typeof req.body === 'object' && !Buffer.isBuffer(req.body)) headers['content-type'] = 'application/json';
  }
  const lib = target.protocol === 'https:' ? https : http;
  const upstream = lib.request(target, { method: req.method, headers, timeout: o.timeoutMs }, (answer) => {
    res.statusCode = answer.statusCode;
    for (const [name, value] of Object.entries(answer.headers)) if (!HOP_BY_HOP.has(name)) res.setHeader(name, value);
    // A client gone mid-answer ends the leader's answer too (and an answer that breaks off
    // ends the client's response): neither stream is left open.
    pipeline(answer, res, () => {});
  });
  // A client that goes away before the leader answered aborts the forwarded request: the
  // leader's handler sees its request close instead of working for nobody.
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  upstream.on('timeout', () => upstream.destroy(new RaftError('ERR_TIMEOUT', `the leader did not answer within ${o.timeoutMs} ms`)));
  upstream.on('error', (/** @type {NodeJS.ErrnoException} */ err) => {
    if (res.headersSent) return res.destroy(err);
    if (err.code === 'ERR_TIMEOUT') return sendError(res, err, o.retryAfterSeconds);
    refuse(`cannot reach the leader at ${target.origin}: ${err.message}`);
  });
  if (body !== undefined) upstream.end(body);
  else pipeline(req, upstream, () => {});
}

/**
 * GET /health (liveness), /ready (readiness: a leader is known and this node applied all it
 * knows committed), /status (JSON) and /metrics (Prometheus text). Other requests pass on.
 */
function raftRouter(node) {
  requireNode(node);
  const routes = {
    '/health': (res) => {
      const running = node.role !== 'stopped';
      json(res, running ? 200 : 503, { id: node.id, running });
    },
    '/ready': (res) => {
      const s = node.status();
      const ready = s.role !== 'stopped' && s.leaderId !== null && s.appliedIndex >= s.commitIndex;
      json(res, ready ? 200 : 503, { id: node.id, ready, leaderId: s.leaderId, commitIndex: s.commitIndex, appliedIndex: s.appliedIndex });
    },
    '/status': (res) => json(res, 200, node.status()),
    '/metrics': (res) => {
      res.statusCode = 200;
      res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
      res.end(node.metrics());
    },
  };
  return function raftlineRouter(req, res, next) {
    const route = (req.method === 'GET' || req.method === 'HEAD') && routes[(req.path ?? new URL(req.url, 'http://x').pathname)];
    if (!route) return next();
    route(res);
  };
}

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(JSON.stringify(body));
}

/**
 * Express error middleware: a RaftError becomes its HTTP status (503 + Retry-After without a
 * leader, 504 on timeout, 409 on conflict, 413 too large, 400 invalid) and a JSON body
 * `{ error: { code, message } }`. Other errors pass on to the next handler.
 */
function errorHandler(opts) {
  const retryAfterSeconds = retryAfter(check.opts(opts));
  return function raftlineErrorHandler(err, req, res, next) {
    if (!(err instanceof RaftError) || res.headersSent) return next(err);
    sendError(res, err, retryAfterSeconds);
  };
}

module.exports = { leaderOnly, raftRouter, errorHandler, STATUS_OF };
