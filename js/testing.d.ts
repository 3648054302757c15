// raftline/testing: in-process clusters with fault injection.
import type { RaftNode, RaftNodeOptions } from '../index';

/** `secret` defaults to a random one per cluster; `false` runs the cluster without one. */
export interface TestClusterOptions extends Omit<RaftNodeOptions, 'id' | 'peers' | 'listen' | 'httpUrl' | 'secret'> {
  secret?: string | false;
  /** Each node's `httpUrl`: one for all, or a function of the node's id. */
  httpUrl?: string | ((id: string) => string);
  /** Number of nodes, named n1..nN. Default 3. */
  size?: number;
  /** 'fast' = heartbeat 10 ms, election 50 ms (default); 'default' = the RaftNode defaults. */
  timing?: 'fast' | 'default';
  /** Durable storage: node `nX` keeps its data in `dataDir/nX`. Needed by `restart`. */
  dataDir?: string;
}

export declare class TestCluster {
  readonly nodes: RaftNode[];
  /** The secret the members prove to each other (random unless given): pass it to joiners. */
  readonly secret: string | undefined;
  node(id: string): RaftNode;
  /** Resolves with the leader once every running node follows it. */
  waitForLeader(opts?: { timeoutMs?: number }): Promise<RaftNode>;
  /** Messages across groups are dropped both ways (on each node's real transport). */
  partition(...groups: string[][]): void;
  isolate(id: string): void;
  heal(): void;
  /**
   * Blocks the engine of `id` for `ms` (timers, peers and disk all wait), as a disk stalled
   * in fsync would: test that fencing and `runWhileLeader` end on time. Resolves once begun.
   */
  stall(id: string, ms: number): Promise<void>;
  /**
   * Fails the engine of `id` as a broken disk ('storage') or an engine bug ('panic') would:
   * the node emits `error` (ERR_STORAGE / ERR_INTERNAL), then `stopped`.
   */
  fault(id: string, kind: 'storage' | 'panic'): Promise<void>;
  /** Abrupt: no leadership handoff, no flush beyond what Raft persisted. */
  kill(id: string): Promise<void>;
  /**
   * Starts `id` again: same id, data directory and address (killed first if running).
   * Needs `dataDir` (else ERR_INVALID). The new node replaces the old one in `nodes`.
   */
  restart(id: string): Promise<RaftNode>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export declare function createTestCluster(options?: TestClusterOptions): Promise<TestCluster>;
