import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RaftNode } from '../index';

/** An Express-compatible middleware (works with Express 4 and 5, and plain `node:http`). */
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;
/** An Express-compatible error middleware. */
export type ErrorMiddleware = (err: unknown, req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

export interface LeaderOnlyOptions {
  /**
   * On a follower: `'forward'` (default) proxies the request to the leader's advertised
   * `httpUrl` and relays its answer; `'redirect'` answers 307 with `Location` at the leader;
   * `'reject'` answers 503 with `Retry-After`. Without a known leader (or its `httpUrl`) every
   * mode answers 503 with `Retry-After`. A forwarded request is never forwarded again.
   */
  mode?: 'forward' | 'redirect' | 'reject';
  /** `Retry-After` of the 503 answers, in seconds. Default 1. */
  retryAfterSeconds?: number;
  /** How long a forwarded request may take before the answer is 504. Default 10000. */
  timeoutMs?: number;
}

/** Lets a request through on the leader; on a follower forwards, redirects or rejects it. */
export declare function leaderOnly(node: RaftNode, opts?: LeaderOnlyOptions): Middleware;

/**
 * `GET /health` (200 while the node runs), `GET /ready` (200 when a leader is known and this
 * node has applied all it knows committed, else 503: the readiness probe), `GET /status`
 * (JSON of `status()`) and `GET /metrics` (Prometheus text). Other requests pass on.
 */
export declare function raftRouter(node: RaftNode): Middleware;

/**
 * Maps a `RaftError` to an HTTP answer `{ error: { code, message, leaderId? } }`: 503 +
 * `Retry-After` for ERR_NO_LEADER, ERR_NOT_LEADER, ERR_STOPPED and ERR_REMOVED; 504 for
 * ERR_TIMEOUT; 409 for ERR_CONFLICT and ERR_CONF_CHANGE_IN_PROGRESS; 413 for ERR_TOO_LARGE;
 * 400 for ERR_INVALID; 404 for ERR_UNKNOWN_MEMBER; 500 otherwise. Other errors pass on.
 */
export declare function errorHandler(opts?: { retryAfterSeconds?: number }): ErrorMiddleware;
