import type { IncomingMessage, ServerResponse } from 'node:http';

/** What the helpers need of a Postgres client: `pg`'s Client, PoolClient or a compatible one. */
export interface PgLike {
  query(text: string, values?: unknown[]): Promise<{ rowCount: number | null; rows: Array<Record<string, unknown>> }>;
}

export interface FenceTableOptions {
  /** The table, optionally `schema.table` (letters, digits and `_`). Default `raftline_fences`. */
  table?: string;
}

/** `CREATE TABLE IF NOT EXISTS`: one row per resource with its highest fence. */
export declare function ensureFenceTable(client: PgLike, opts?: FenceTableOptions): Promise<void>;

/**
 * Inside the caller's transaction: records `fence` for `resource`, or throws a RaftError
 * `ERR_FENCED` (with `resource`, `fence` and `highest`) when a higher fence was recorded.
 * Roll the transaction back on that error. The same fence passes again. The row stays locked
 * until the transaction ends, so an older fence never commits after a newer one.
 */
export declare function checkFence(client: PgLike, resource: string, fence: number, opts?: FenceTableOptions): Promise<void>;

/** The HTTP header a fenced request carries: `raftline-fence: <resource>=<fence>`. */
export declare const FENCE_HEADER: 'raftline-fence';

/** The FENCE_HEADER value for `resource` and `fence` (the resource URI-encoded). */
export declare function fenceHeader(resource: string, fence: number): string;

/** Where requireFence keeps the highest fence per resource. */
export interface FenceStore {
  /** Records `fence` and returns true, or returns false when a higher one was recorded. */
  check(resource: string, fence: number): boolean | Promise<boolean>;
}

/** The default FenceStore: this process's memory (one resource server). */
export declare class MemoryFenceStore implements FenceStore {
  check(resource: string, fence: number): boolean;
}

export interface RequireFenceOptions {
  /** The resource a request writes to (its fence header must name it). */
  resource: (req: IncomingMessage) => string;
  /** Default: a MemoryFenceStore of this middleware's own. */
  store?: FenceStore;
}

/**
 * Express middleware: a request whose fence is older than the highest seen for its resource
 * is answered 409 (`{ error: { code: 'ERR_FENCED' } }`), one without a valid header 400.
 */
export declare function requireFence(
  opts: RequireFenceOptions,
): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;
