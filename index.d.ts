// raftline: Raft consensus embedded in Node.js services. Hand-written public types.
import { EventEmitter } from 'node:events';

/**
 * A replicated value: null, booleans, numbers, strings, arrays, plain objects, Date and
 * Buffer/Uint8Array (binary comes back as Buffer): what reads back as it was written. Keys
 * such as `__proto__` are plain data. Objects are typed loosely so that interfaces fit;
 * functions do not type-check. At run time anything else (Map, Set, RegExp, Error, Promise,
 * class instances, bigint, undefined, cyclic values, nesting deeper than 100, strings with
 * lone surrogates) is refused with a TypeError naming its path, e.g. `value.tags[2]`.
 */
export type Value =
  | null
  | boolean
  | number
  | string
  | Date
  | Buffer
  | Uint8Array
  | readonly Value[]
  | { readonly [key: string]: Value }
  | (object & NotAFunction);

/** What sets objects apart from functions in `Value`. */
export interface NotAFunction {
  readonly call?: never;
  readonly apply?: never;
  readonly bind?: never;
}

/** The logger methods raftline calls (pino's signature: fields first, then the message). */
export interface Logger {
  error(fields: LogFields, message: string): unknown;
  warn(fields: LogFields, message: string): unknown;
  info(fields: LogFields, message: string): unknown;
  debug(fields: LogFields, message: string): unknown;
  trace?(fields: LogFields, message: string): unknown;
}

/** The structured part of a log line: the member, the engine module, and the event's fields. */
export interface LogFields {
  node: string;
  /** e.g. `raftline::transport::peer`, or `raft` for the consensus algorithm itself. */
  target: string;
  [field: string]: string;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'off';

export interface RaftNodeOptions {
  /** This member's stable name: 1-64 characters of [A-Za-z0-9._-]. */
  id: string;
  /** Initial voters, name -> ws:// or wss:// URL; may include this node. */
  peers?: Record<string, string>;
  /** 'host:port' to bind. Default: the port of this node's URL in `peers`, else '127.0.0.1:0'. */
  listen?: string;
  /**
   * Durable storage directory: every acknowledged write is fsynced before it is
   * acknowledged, and survives any crash. Omitted: in memory (nothing survives a restart).
   */
  dataDir?: string;
  /**
   * Start empty and wait to be added by the leader (`addMember`). `peers` then only says
   * where members listen (at least one must be reachable), not who votes; it must name at
   * least one member other than this node (else TypeError).
   */
  join?: boolean;
  /**
   * Recovery from a lost quorum: restart this member, from the data in `dataDir`, as the
   * only member of a new cluster (entries it had not seen committed are dropped; a loud
   * warning says what was removed). Add the others back with `addMember`. Needs `dataDir`;
   * not with `join`. Left on, later starts do nothing more.
   */
  forceNewCluster?: boolean;
  /** Default 'raftline'; peers of another cluster are refused at the handshake. */
  clusterId?: string;
  /**
   * Shared secret (16-1024 bytes, else RangeError; generate one with `openssl rand -hex 32`):
   * peers must prove it in the handshake, by a mutual HMAC-SHA256 challenge-response over
   * fresh nonces; the secret never crosses the wire. A peer without it (or with another) is
   * refused before raft sees a byte, and every frame after the handshake is encrypted and
   * authenticated (ChaCha20-Poly1305 under keys derived from the secret and the handshake):
   * a frame injected, replayed or reordered on the path closes the connection. Every member
   * needs the same secret. `raftline/testing` draws a random one per cluster unless given.
   */
  secret?: string;
  /**
   * Default false. A node whose `listen` address or own peer URL is not loopback refuses to
   * start (ERR_INVALID) without a `secret` or `tls`, unless `insecure: true` says the peer
   * network is trusted (anyone who reaches the port can then speak for a member).
   */
  insecure?: boolean;
  /**
   * TLS on the peer port (wss://; every peer URL must then be wss://): this node's PEM
   * certificate chain and private key, and the CA that signs every member's certificate.
   * Both sides present and verify certificates; the dialer also checks that the listener's
   * certificate names the host it dialled. Without `ca`, members share one self-signed
   * `cert`. Works together with `secret`.
   */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer };
  /** Leader heartbeat interval, default 50. */
  heartbeatMs?: number;
  /** Base election timeout, default 150; the actual one is random in [t, 2t). */
  electionTimeoutMs?: number;
  /** Default true. */
  preVote?: boolean;
  /**
   * Default true: a leader that loses quorum steps down. The leader lease (`isLeader`,
   * lease reads, `runWhileLeader`) needs it: with `false`, `isLeader` stays false, lease
   * reads go through the leader, and `runWhileLeader` jobs never start.
   */
  checkQuorum?: boolean;
  /** Compact the log after this many applied entries (durable storage), default 10000. */
  snapshotEvery?: number;
  /** Default 1 MiB; larger proposals reject with ERR_TOO_LARGE. */
  maxProposalBytes?: number;
  /**
   * Most writes this node holds at once, waiting for a leader or for their entry to apply
   * (default 65,536, at most 1,048,576): past it a write rejects at once with
   * ERR_OVERLOADED (retryable, nothing was done) instead of queuing without bound.
   */
  maxPendingWrites?: number;
  /**
   * Keep the changes this node applies for `watch({ fromIndex })` from its start (default
   * false: from its first `watch()` on, since keeping them costs about a tenth of the write
   * throughput). A watch from an index older than what the node keeps starts with a resync.
   */
  recordChanges?: boolean;
  /** This node's engine log level, default 'warn'. Other nodes in the process keep theirs. */
  logLevel?: LogLevel;
  /**
   * Where this node's engine log lines go instead of stderr (at `logLevel` and above), e.g. a
   * pino logger: each line is `logger[level]({ node, target, ...fields }, message)`; trace
   * lines go to `logger.trace` if it exists, else `logger.debug`. A method that throws is
   * reported as an `error` event (ERR_CALLBACK).
   */
  logger?: Logger;
  /**
   * This service's HTTP base URL (`http://` or `https://`, at most 256 printable ASCII
   * characters), told to every member this node connects to: followers find the leader's in
   * `status().leaderHttpUrl` (`raftline/express`'s `leaderOnly` forwards there). With a
   * `secret` it is covered by the handshake's proof.
   */
  httpUrl?: string;
  /**
   * For `propose` users with a state machine of their own, next to the built-in key-value
   * state. Every `snapshotEvery` applied entries (with `dataDir`) `save()` is called when
   * your state machine has applied exactly the entries up to the snapshot point (it runs
   * between two `apply` events); its bytes are stored in the snapshot. `restore(data)` is
   * called before any later `apply` event when a node starts from a snapshot or installs
   * one from the leader: replace your whole state with it (data is empty if the snapshot
   * was taken without hooks).
   */
  snapshotHooks?: SnapshotHooks;
}

export interface SnapshotHooks {
  save(): Buffer | Uint8Array;
  restore(data: Buffer): void;
}

export type Role = 'follower' | 'candidate' | 'precandidate' | 'leader' | 'learner' | 'stopped';
export type Consistency = 'linearizable' | 'lease' | 'local';
export type Health = 'healthy' | 'degraded' | 'unhealthy' | 'unknown';

export type ErrorCode =
  | 'ERR_NOT_LEADER'
  | 'ERR_NO_LEADER'
  | 'ERR_TIMEOUT'
  | 'ERR_STOPPED'
  | 'ERR_TOO_LARGE'
  | 'ERR_STORAGE'
  | 'ERR_ADDR_IN_USE'
  | 'ERR_CONF_CHANGE_IN_PROGRESS'
  | 'ERR_UNKNOWN_MEMBER'
  | 'ERR_INVALID'
  /** `update()` still met conflicting writes when its deadline came. */
  | 'ERR_CONFLICT'
  /** This node was removed from the cluster: writes and reads reject at once. */
  | 'ERR_REMOVED'
  /** A bug in the engine stopped the node (reported by `error`, followed by `stopped`). */
  | 'ERR_INTERNAL'
  /** `error` event: an event listener or a runWhileLeader job threw; `cause` is what it threw. */
  | 'ERR_CALLBACK'
  /**
   * Too many requests wait on this node already; nothing was done, retry later. A node holds
   * at most 65,536 writes in flight (waiting for a leader or for their entry), at most 256 MiB
   * of writes waiting for a leader, and at most 65,536 requests queued to its engine.
   */
  | 'ERR_OVERLOADED'
  /**
   * A `watch()` whose consumer fell `maxBuffered` changes behind ended with this error; its
   * `lastIndex` is the last log index whose changes it received in full.
   */
  | 'ERR_WATCH_OVERFLOW'
  /**
   * The session is gone: its signal aborts with this reason when it is lost (no keepalive
   * applied in time; the holder gives it up before the cluster can expire it), closed, or its
   * node stops; locking in a session that is gone rejects with it.
   */
  | 'ERR_SESSION_LOST'
  /** `lock()` waited `timeoutMs` without being granted (it left the queue). */
  | 'ERR_LOCK_TIMEOUT'
  /**
   * raftline/fence: a fence older than the highest one recorded for the resource (the write
   * must not happen). Carries `resource`, `fence` and `highest`.
   */
  | 'ERR_FENCED';

/**
 * Every rejection of a RaftNode method (aborted signals reject with the standard AbortError,
 * whose `cause` is the signal's reason).
 */
export declare class RaftError extends Error {
  readonly name: 'RaftError';
  readonly code: ErrorCode;
  /** With ERR_NOT_LEADER: the leader this node follows, if known. */
  readonly leaderId?: string | null;
  /** With ERR_WATCH_OVERFLOW: the last index whose changes the watch delivered in full. */
  readonly lastIndex?: number;
  /** With ERR_FENCED: the resource, the stale fence, and the highest recorded (if known). */
  readonly resource?: string;
  readonly fence?: number;
  readonly highest?: number | null;
  static readonly codes: readonly ErrorCode[];
}

export interface SessionOptions {
  /** Default 10,000. At least ten heartbeats (and 100 ms), at most 86,400,000. */
  ttlMs?: number;
  signal?: AbortSignal;
}

/** A session kept alive by the node that opened it (see `RaftNode.session`). */
export interface Session {
  /** Unique in the cluster for all time (the index of the entry that opened it). */
  readonly id: string;
  readonly ttlMs: number;
  /** Aborts (reason: RaftError ERR_SESSION_LOST) before the cluster can expire the session. */
  readonly signal: AbortSignal;
  readonly alive: boolean;
  /** Revokes it now: the signal aborts first, then one entry releases its locks. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface LockOptions {
  /** The session that holds the lock; without it the lock makes its own (closed on release). */
  session?: Session;
  /** The TTL of the lock's own session (not with `session`). Default 10,000. */
  ttlMs?: number;
  /** How long `lock()` waits to be granted; default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A lock held by a session (see `RaftNode.lock`). */
export interface Lock {
  readonly name: string;
  /**
   * The index of the log entry that granted it: strictly increasing over every grant in the
   * cluster. Give it to what the lock protects (raftline/fence) so that it refuses a holder
   * that woke up late.
   */
  readonly fence: number;
  /** Aborts when the lock is lost (its session ended) or released. */
  readonly signal: AbortSignal;
  /** Releases it (the next waiter is granted in the same entry). Idempotent. */
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Log position of a write. */
export interface WriteResult {
  index: number;
  term: number;
  /**
   * A retry of a write with the same `idempotencyKey` that applied before: this is the
   * first write's result (its index, term and answer), and nothing applied now.
   */
  duplicate?: true;
}

/**
 * Options of every write. A write that timed out (ERR_TIMEOUT) or was aborted may still
 * commit later: its outcome is unknown. With no leader known (after start, during an
 * election) a write waits for one; ERR_NO_LEADER when `timeoutMs` ran out with none known
 * (nothing was proposed). A removed node rejects at once with ERR_REMOVED. Past the node's bounds
 * on writes in flight a write rejects at once with ERR_OVERLOADED (nothing was done).
 */
export interface WriteOptions {
  signal?: AbortSignal;
  /** Default 5000: how long to wait for a leader and for the entry to apply here. */
  timeoutMs?: number;
  /** On a follower, forward to the leader (default) or reject with ERR_NOT_LEADER. */
  forward?: boolean;
  /**
   * 1-256 bytes: the write applies once per key. A retry with the same key (from any
   * member, after ERR_TIMEOUT or a leader change) applies nothing and resolves with the
   * first write's result and `duplicate: true`. The cluster remembers the last 100,000 keyed
   * writes (fewer when their keys and results pass 64 MiB); a retry after that applies
   * again. Not for `update()` (its `fn` runs again on every conflict).
   */
  idempotencyKey?: string;
}

export interface ReadOptions {
  /** Default 'linearizable' (ReadIndex through the leader; works on followers). */
  consistency?: Consistency;
  signal?: AbortSignal;
  /** Default 5000. */
  timeoutMs?: number;
}

/** A set with `session` writes an ephemeral key (see `EphemeralWriteOptions`). */
export type BatchOp = { op: 'set'; key: string; value: Value; session?: Session } | { op: 'delete'; key: string };

/** A key's value with its revisions (log indexes: the same on every member). */
/** What `backup()` wrote. */
export interface BackupResult {
  /** The log index the state is at (every write acknowledged before the call is in it). */
  index: number;
  term: number;
  /** Size of the backup file. */
  bytes: number;
  /** Hex SHA-256 of the file's bytes (as `sha256sum` prints it). */
  sha256: string;
}

export interface RestoreOptions {
  /** A new (absent or empty) data directory for this member. */
  dataDir: string;
  /** This member's name; it must be one of `peers`. */
  id: string;
  /** Every member of the new cluster, name -> ws:// or wss:// URL (the same on each member). */
  peers: Record<string, string>;
}

export interface KeyEntry<T = unknown> {
  value: T;
  /** Index of the entry that created the key (a key deleted and set again starts over). */
  createIndex: number;
  /** Index of the entry that last wrote it. */
  modIndex: number;
  /** Writes since its creation, that one included (1 after the creating write). */
  version: number;
  /** The id of the session that owns the key, if it is ephemeral. */
  session?: string;
}

/** One comparison of a transaction; an absent key has `modIndex` and `version` 0. */
export type TxnCompare = { key: string } & (
  | { exists: boolean }
  | { value: Value }
  | { modIndex: number }
  | { version: number }
);

/** One operation of a transaction's branch. */
export type TxnOp =
  | { op: 'set'; key: string; value: Value; session?: Session }
  | { op: 'delete'; key: string }
  | { op: 'get'; key: string };

/** At most 128 comparisons and operations together. */
export interface Txn {
  if?: TxnCompare[];
  then?: TxnOp[];
  else?: TxnOp[];
}

/** Per operation of the branch that ran: a set or delete `{ existed }`, a get its entry. */
export type TxnOpResult = { existed: boolean } | KeyEntry | undefined;

export interface TxnResult extends WriteResult {
  /** Whether every comparison held (`then` ran) or not (`else` ran). */
  succeeded: boolean;
  results: TxnOpResult[];
}

/** `set` and `cas` options. */
export interface EphemeralWriteOptions extends WriteOptions {
  /**
   * An ephemeral key: it belongs to this session (of this node) and is deleted in the entry
   * that ends it (close or expiry; watchers see the deletion). A later write without a
   * session makes it an ordinary key. ERR_SESSION_LOST, writing nothing, when the session
   * has ended.
   */
  session?: Session;
}

export interface Member {
  id: string;
  url: string | null;
  voter: boolean;
  health: Health;
  matchIndex: number | null;
  lastContactMs: number | null;
  /** Its `httpUrl`, as it advertised to this node (null: not known here). */
  httpUrl: string | null;
}

export interface NodeStatus {
  id: string;
  role: Role;
  term: number;
  leaderId: string | null;
  /** The leader's `httpUrl`, once the leader has connected to this node. */
  leaderHttpUrl: string | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  snapshotIndex: number;
  members: Member[];
}

export interface LeaderChangeEvent {
  leaderId: string | null;
  previousLeaderId: string | null;
  term: number;
  /** True when this node is the new leader. */
  isLeader: boolean;
}

export interface RoleChangeEvent {
  role: Role;
  previousRole: Role;
  term: number;
}

export interface ApplyEvent {
  index: number;
  term: number;
  /** txn: `ops` lists the keys it changed, as for a batch. */
  op: 'set' | 'delete' | 'cas' | 'batch' | 'raw' | 'incr' | 'txn';
  key?: string;
  value?: unknown;
  prev?: unknown;
  /** cas: whether it matched; incr: whether the value was a number. */
  ok?: boolean;
  ops?: BatchOp[];
  /** raw: the proposed bytes. */
  data?: Buffer;
}

/**
 * First of a watch from an index older than what this node keeps: the prefix's pairs at
 * `index` (its last applied entry), sorted by key; the changes after `index` follow.
 */
export interface ResyncEvent {
  op: 'resync';
  index: number;
  entries: Array<[string, unknown]>;
}

export interface WatchOptions {
  prefix?: string;
  signal?: AbortSignal;
  /** Live changes held for a consumer that does not keep up (default 10,000). */
  maxBuffered?: number;
}

export interface ChangeEvent {
  index: number;
  key: string;
  op: 'set' | 'delete';
  value?: unknown;
  prev?: unknown;
}

export interface MembershipChangeEvent {
  members: Member[];
  index: number;
}

export interface PeerHealthEvent {
  id: string;
  health: Health;
  previousHealth: Health;
}

export interface SnapshotEvent {
  index: number;
  term: number;
  bytes: number;
}

/** The events of a RaftNode: `node.on('leaderChange', e => e.term)` is typed. */
export interface RaftNodeEvents {
  leaderChange: [event: LeaderChangeEvent];
  roleChange: [event: RoleChangeEvent];
  apply: [event: ApplyEvent];
  change: [event: ChangeEvent];
  /** A membership change was applied (on every member). */
  membershipChange: [event: MembershipChangeEvent];
  /** On the leader: a member's health changed (judged every heartbeat). */
  peerHealth: [event: PeerHealthEvent];
  /** A snapshot was taken (every `snapshotEvery` entries, in memory too) or installed from the leader. */
  snapshot: [event: SnapshotEvent];
  /**
   * A background fault: the engine stopped the node (ERR_STORAGE, ERR_INTERNAL; `stopped`
   * follows), a stored value that does not decode (ERR_INVALID), or a listener of another
   * event or a `runWhileLeader` job that threw (ERR_CALLBACK, with what it threw as
   * `cause`). Without a listener: a process warning.
   */
  error: [error: RaftError];
  stopped: [event: Record<string, never>];
}

export interface LeaderJobContext {
  /** Aborted the moment leadership is lost or the node stops. */
  signal: AbortSignal;
  /** The term of this reign: a fencing token (terms only grow). */
  term: number;
}

export declare class RaftNode extends EventEmitter<RaftNodeEvents> {
  /** Validates options (TypeError / RangeError naming the option); nothing starts. */
  constructor(options: RaftNodeOptions);

  // Lifecycle
  /** Binds, connects to peers and begins ticking. Rejects (ERR_ADDR_IN_USE, ...) with nothing left running. */
  start(): Promise<void>;
  /** A leader first hands leadership over (default); then sockets close and every handle is released. Idempotent. */
  stop(opts?: { transferLeadership?: boolean; timeoutMs?: number }): Promise<void>;
  /** The bound 'host:port' after start(). */
  readonly address: string | null;
  /** The ws:// URL peers should use for this node. */
  readonly url: string | null;
  [Symbol.asyncDispose](): Promise<void>;

  // Leadership
  readonly id: string;
  readonly role: Role;
  readonly leaderId: string | null;
  /**
   * Current term. Terms only grow: use it as a fencing token. Terms and indexes are exact
   * numbers: no node goes beyond Number.MAX_SAFE_INTEGER (peers' messages that would take
   * it there are refused).
   */
  readonly term: number;
  /**
   * True only while this node leads AND a quorum confirmed it within the election timeout
   * (a lease, ended by its instant even when the engine is stalled; none during a
   * leadership transfer, none with `checkQuorum: false`).
   */
  readonly isLeader: boolean;
  waitForLeader(opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<string>;
  onLeaderChange(cb: (event: LeaderChangeEvent) => void): () => void;
  /**
   * Leader only (else ERR_NOT_LEADER); resolves with the new leader's id. Rejects with
   * ERR_TIMEOUT as soon as the transfer is given up (no takeover within an election
   * timeout): it may be tried again.
   */
  transferLeadership(to?: string, opts?: { timeoutMs?: number }): Promise<string>;
  /**
   * Runs `job` each time this node becomes leader (confirmed by a quorum) and aborts
   * `ctx.signal` when leadership is lost, the lease runs out (a timer checks it, so a
   * stalled engine cannot keep a job running) or the node stops. A job that returns or
   * throws while this node still leads runs again after a backoff (100 ms doubling to 10 s,
   * jittered; reset by a run of 10 s or more, none in a new term); throws are `error` events (ERR_CALLBACK).
   * Returns a cancel function.
   */
  runWhileLeader(job: (ctx: LeaderJobContext) => Promise<void> | void, opts?: { signal?: AbortSignal }): () => Promise<void>;

  // Replicated key-value state
  /** Resolves once the entry is committed and applied on this node. */
  set(key: string, value: Value, opts?: EphemeralWriteOptions): Promise<WriteResult>;
  delete(key: string, opts?: WriteOptions): Promise<WriteResult & { existed: boolean }>;
  /** `expected === undefined`: the key must be absent; `next === undefined` deletes it. Deep equality. */
  cas(key: string, expected: Value | undefined, next: Value | undefined, opts?: EphemeralWriteOptions): Promise<WriteResult & { ok: boolean; current: unknown }>;
  /** All ops in one log entry, applied atomically. */
  batch(ops: BatchOp[], opts?: WriteOptions): Promise<WriteResult>;
  /**
   * get + cas loop: on a conflict (another write got in between) `fn` runs again on the newer
   * value, after a jittered backoff (up to 100 ms), until `timeoutMs`: contention alone never
   * fails it early. Rejects ERR_CONFLICT when the deadline comes while conflicts go on.
   * `fn` runs locally, never replicated, and may run several times; returning undefined
   * deletes the key.
   */
  update<T = unknown>(key: string, fn: (prev: T | undefined) => T | undefined | Promise<T | undefined>, opts?: WriteOptions): Promise<WriteResult>;
  /**
   * Atomic numeric add in one log entry (absent key = 0), no retry: resolves with the new
   * value. A value that is not a number rejects ERR_INVALID (the entry changes nothing).
   */
  incr(key: string, by?: number, opts?: WriteOptions): Promise<WriteResult & { value: number }>;
  get<T = unknown>(key: string, opts?: ReadOptions): Promise<T | undefined>;
  /** Synchronous read of this node's applied state. */
  getLocal<T = unknown>(key: string): T | undefined;
  /**
   * Sorted by key: at most `limit` pairs, after the key `after` when given (the last key of
   * the previous page).
   */
  entries(opts?: ReadOptions & { prefix?: string; limit?: number; after?: string }): Promise<Array<[string, unknown]>>;
  /** The value at `key` with its revisions; undefined when absent. */
  getEntry<T = unknown>(key: string, opts?: ReadOptions): Promise<KeyEntry<T> | undefined>;
  /**
   * Compares keys and runs `then` when every comparison holds, `else` otherwise, in one log
   * entry: atomically, the operations in order (a get sees the writes before it).
   */
  txn(t: Txn, opts?: WriteOptions): Promise<TxnResult>;
  /**
   * Every applied change from now on, in log order. Ends when the node stops; rejects with
   * AbortError on abort. Changes wait for the consumer up to `maxBuffered` (default 10,000):
   * one that falls further behind gets ERR_WATCH_OVERFLOW (with `lastIndex`) from `next()`
   * and the iteration ends; nothing is skipped silently.
   */
  watch(opts?: WatchOptions): AsyncIterableIterator<ChangeEvent>;
  /**
   * Every change after `fromIndex` (0 for all this node keeps), then live ones, with no gap
   * and no duplicate. When this node no longer keeps the changes after `fromIndex` (it keeps
   * the last 100,000 from its first watch on, and none from before a snapshot it installed),
   * the first item is a
   * resync: the prefix's state at an index, then the changes after it. To resume after an
   * ERR_WATCH_OVERFLOW, watch again from its `lastIndex`.
   */
  watch(opts: WatchOptions & { fromIndex: number }): AsyncIterableIterator<ChangeEvent | ResyncEvent>;
  // Operations: backup and restore
  /**
   * Writes a backup of the replicated state (keys with revisions, sessions, locks, ephemeral
   * keys, idempotency records, members) at a linearizable index, from any member: to a file
   * (written to a temporary file, fsynced, renamed) or to a stream (which is ended). The file
   * ends with a SHA-256 of its content, which `RaftNode.restore` checks. A node with
   * `snapshotHooks` is refused (ERR_INVALID): its application's state is not in it.
   */
  backup(dest: string | NodeJS.WritableStream, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<BackupResult>;
  /**
   * Seeds a new data directory from a backup (a file path, or its bytes), for member `id` of
   * a new cluster of `peers`: every member restores the same backup with the same `peers`,
   * then starts with that `dataDir`. A corrupt, cut or unknown backup is refused
   * (ERR_INVALID) before anything is written; so is a `dataDir` that holds files.
   */
  static restore(backup: string | Uint8Array, opts: RestoreOptions): Promise<void>;
  // Coordination: sessions and locks
  /**
   * Opens a session that this node keeps alive with keepalive entries (`ttlMs` default 10 s,
   * at least ten heartbeats and 100 ms, at most a day). Its `signal` aborts (ERR_SESSION_LOST)
   * on this node before the cluster can expire it: the holder counts from when it sent the
   * last keepalive that applied, less 1% for clock-rate drift and one tick. A session whose
   * node dies expires after its TTL (a leader change does not extend it). `signal` aborts the
   * opening, and closes the session once open.
   */
  session(opts?: SessionOptions): Promise<Session>;
  /**
   * Waits for lock `name`, first come first served (by the index of the request's entry), and
   * resolves with it; rejects ERR_LOCK_TIMEOUT after `timeoutMs` (default: no limit), or on
   * `signal`, or ERR_SESSION_LOST when its session ends first. Without `session` the lock makes
   * a session of its own (`ttlMs`) and closes it on release. One session holds a lock once:
   * asking again resolves with the same grant.
   */
  lock(name: string, opts?: LockOptions): Promise<Lock>;
  /** Like `lock()` but does not wait: `null` when another session holds or waits for it. */
  tryLock(name: string, opts?: LockOptions): Promise<Lock | null>;
  /** Runs `fn` holding lock `name` and releases it whatever `fn` does; resolves with its result. */
  withLock<T>(name: string, fn: (ctx: { fence: number; signal: AbortSignal }) => Promise<T> | T, opts?: LockOptions): Promise<T>;

  /** A raw command for a state machine of your own: it reaches you through `apply` with op 'raw'. */
  propose(data: Buffer | Uint8Array, opts?: WriteOptions): Promise<WriteResult>;

  // Membership (one change at a time, through the leader; followers forward)
  /**
   * Adds a member that was started with `join: true` and listens at `url`, as a voter or
   * (`learner: true`) a non-voting learner; it catches up from the leader (by snapshot when
   * needed). Uses joint consensus: resolves once the change is complete on this node (the
   * joint configuration entered and left again). ERR_CONF_CHANGE_IN_PROGRESS while another
   * change is pending (decided by the leader, also for a change forwarded from a follower).
   * ERR_INVALID when the change would leave fewer than a quorum of voters reachable and
   * caught up (add a learner, then promote it once caught up).
   */
  addMember(id: string, url: string, opts?: { learner?: boolean; timeoutMs?: number }): Promise<void>;
  /** Learner -> voter. ERR_UNKNOWN_MEMBER for an id that is not a member. */
  promoteMember(id: string, opts?: { timeoutMs?: number }): Promise<void>;
  /**
   * Removes a member; a leader removing itself hands leadership over first. The removed
   * node rejects writes and reads with ERR_REMOVED; stop it afterwards.
   */
  removeMember(id: string, opts?: { timeoutMs?: number }): Promise<void>;

  // Status
  status(): NodeStatus;
  /**
   * Members as this node sees them. On the leader, refreshed every heartbeat: `health`
   * ('healthy': answers within three heartbeats and replicates normally; 'degraded': late,
   * or being caught up; 'unhealthy': silent for an election timeout), `matchIndex`,
   * `lastContactMs`. Elsewhere 'unknown' / null.
   */
  members(): Member[];
  /**
   * This node's figures in the Prometheus text format (0.0.4), every sample labelled
   * `node="<id>"`: raftline_term, raftline_is_leader, raftline_leader_changes_total,
   * raftline_elections_total, raftline_proposals_total, raftline_proposals_failed_total,
   * raftline_commit_index, raftline_applied_index, raftline_last_index,
   * raftline_snapshot_index, raftline_proposal_duration_seconds (histogram),
   * raftline_peer_health{peer} (leader only: 1 healthy, 0.5 degraded, 0 unhealthy),
   * raftline_bytes_sent_total, raftline_bytes_received_total,
   * raftline_proposals_overloaded_total, raftline_frames_refused_total,
   * raftline_log_syncs_total. Counters keep their values
   * after `stop()`.
   */
  metrics(): string;
  /** The same figures as a plain object, e.g. for OpenTelemetry observable instruments. */
  metricsJson(): MetricsJson;
}

export interface MetricsJson {
  node: string;
  role: Role;
  term: number;
  isLeader: boolean;
  leaderId: string | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  snapshotIndex: number;
  leaderChanges: number;
  elections: number;
  /** Writes proposed through this node (forwarded ones count on the leader that ran them). */
  proposals: number;
  /** Of those, the ones that failed or whose outcome is unknown (timeouts). */
  proposalsFailed: number;
  /** Cumulative buckets: `count` proposals took at most `le` seconds. */
  proposalDuration: { buckets: Array<{ le: number; count: number }>; count: number; sumSeconds: number };
  bytesSent: number;
  bytesReceived: number;
  /** Writes through this node refused at once with ERR_OVERLOADED. */
  proposalsOverloaded: number;
  /** Peer frames refused for their size, number of messages or (with a secret) failed authentication (each closed its connection). */
  framesRefused: number;
  /** Fsyncs of this node's log (a durable node; 0 in memory). Under load many writes share one. */
  logSyncs: number;
  /** Sessions open in the cluster, locks held and sessions waiting for locks (as this node applied them). */
  sessions: number;
  locksHeld: number;
  lockWaiters: number;
  /** Sessions whose expiry this node applied since it started. */
  sessionsExpired: number;
  peers: Array<{ id: string; health: Health; matchIndex: number | null; lastContactMs: number | null }>;
}
