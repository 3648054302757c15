'use strict';
// raftline/testing: in-process clusters on ephemeral loopback ports, with faults injected
// into each node's real transport.

const { RaftNode, kInternal } = require('./node.js');
const { RaftError } = require('./errors.js');
const check = require('./options.js');

const TIMINGS = {
  fast: { heartbeatMs: 10, electionTimeoutMs: 50 },
  default: {},
};

class TestCluster {
  /** @type {RaftNode[]} */
  nodes;
  #optionsOf;

  constructor(nodes, optionsOf) {
    this.nodes = nodes;
    this.#optionsOf = optionsOf;
  }

  /** The secret the members prove to each other: give it to nodes that join the cluster. */
  get secret() {
    return this.#optionsOf(this.nodes[0].id).secret;
  }

  /** The node named `id`. */
  node(id) {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) throw new RaftError('ERR_UNKNOWN_MEMBER', `no node ${JSON.stringify(id)} in this cluster`);
    return node;
  }

  #running() {
    return this.nodes.filter((n) => n.role !== 'stopped');
  }

  /** Resolves with the leader once every running node follows the same one. */
  waitForLeader(opts) {
    const timeoutMs = check.timeout(check.opts(opts).timeoutMs, 'opts.timeoutMs', 10_000);
    return new Promise((resolve, reject) => {
      const nodes = this.#running();
      const settle = () => {
        const leaderId = nodes[0] && nodes[0].leaderId;
        const leader = leaderId && nodes.find((n) => n.id === leaderId);
        if (leader && leader.role === 'leader' && nodes.every((n) => n.leaderId === leaderId || n.role === 'stopped')) {
          cleanup();
          resolve(leader);
        }
      };
      const cleanup = () => {
        clearTimeout(timer);
        for (const n of nodes) n.off('leaderChange', onChange);
      };
      const onChange = () => setImmediate(settle);
      const timer = setTimeout(() => {
        cleanup();
        const seen = nodes.map((n) => `${n.id}:${n.role}->${n.leaderId}`).join(' ');
        reject(new RaftError('ERR_TIMEOUT', `no agreed leader within ${timeoutMs} ms (${seen})`));
      }, timeoutMs);
      for (const n of nodes) n.on('leaderChange', onChange);
      settle();
    });
  }

  /** Drops all messages between the groups, both ways. */
  partition(...groups) {
    const all = groups.map((g, i) => {
      if (!Array.isArray(g)) throw new TypeError(`groups[${i}] must be an array of node ids`);
      return g.map((id) => this.node(id));
    });
    for (let i = 0; i < all.length; i++) {
      for (let j = 0; j < all.length; j++) {
        if (i === j) continue;
        for (const a of all[i]) for (const b of all[j]) if (a.role !== 'stopped') a[kInternal].blockPeer(b.id);
      }
    }
  }

  /** Cuts `id` off from every other node. */
  isolate(id) {
    this.partition([id], this.nodes.map((n) => n.id).filter((n) => n !== id));
  }

  /** Removes every fault. */
  heal() {
    for (const n of this.nodes) n[kInternal].clearFaults();
  }

  /**
   * Blocks the engine of `id` for `ms` (its timers, peers and disk all wait), as a disk
   * stalled in fsync would. Resolves when the stall has begun.
   */
  async stall(id, ms) {
    check.integer('ms', ms, 1, 60_000);
    await this.node(id)[kInternal].stallDriver(ms);
  }

  /**
   * Fails the engine of `id` as a broken disk (`'storage'`) or an engine bug (`'panic'`)
   * would: the node emits `error` (ERR_STORAGE / ERR_INTERNAL), then `stopped`.
   */
  async fault(id, kind) {
    if (kind !== 'storage' && kind !== 'panic') throw new TypeError(`kind must be 'storage' or 'panic', got ${JSON.stringify(kind)}`);
    await this.node(id)[kInternal].injectFault(kind);
  }

  /** Abrupt stop of `id`: no leadership handoff, no flush beyond what Raft persisted. */
  async kill(id) {
    await this.node(id)[kInternal].kill();
  }

  /**
   * Starts `id` again with the same id, data directory and address (killing it first if it
   * runs). Resolves with the new RaftNode, which replaces the old one in `nodes`.
   */
  async restart(id) {
    const old = this.node(id);
    const options = this.#optionsOf(id);
    if (options.dataDir === undefined) {
      throw new RaftError('ERR_INVALID', 'restart needs a dataDir: a voter that forgot its log would break safety');
    }
    if (old.role !== 'stopped') await this.kill(id);
    const node = new RaftNode({ ...options, listen: old.address }, kInternal);
    await node.start();
    for (const other of this.nodes) {
      if (other !== old && other.role !== 'stopped') node[kInternal].setPeerUrl(other.id, other.url);
    }
    this.nodes[this.nodes.indexOf(old)] = node;
    return node;
  }

  async close() {
    await Promise.all(this.nodes.map((n) => n.stop({ transferLeadership: false })));
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }
}

/**
 * Starts `size` nodes named n1..nN on 127.0.0.1 with ephemeral ports.
 * @param {import('./testing').TestClusterOptions} [options]
 */
async function createTestCluster(options = {}) {
  const o = check.opts(options, 'options');
  const { size = 3, timing = 'fast', dataDir, ...nodeOptions } = o;
  check.integer('options.size', size, 1, 100);
  if (!(timing in TIMINGS)) throw new TypeError(`options.timing must be 'fast' or 'default', got ${JSON.stringify(timing)}`);
  if (dataDir !== undefined && (typeof dataDir !== 'string' || dataDir === '')) {
    throw new TypeError(`options.dataDir must be a directory path, got ${JSON.stringify(dataDir)}`);
  }
  for (const k of ['id', 'peers', 'listen']) {
    if (k in nodeOptions) throw new TypeError(`options.${k} is chosen by the test cluster`);
  }
  const names = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  // Peers prove a secret of the cluster's own: another test's cluster (or anything else on
  // the machine) cannot talk to it.
  // (`secret: false`: none, as a trusted network on loopback may run.)
  if (nodeOptions.secret === undefined) nodeOptions.secret = require('node:crypto').randomBytes(16).toString('hex');
  if (nodeOptions.secret === false) delete nodeOptions.secret;
  const peers = Object.fromEntries(names.map((n) => [n, '']));
  // With a dataDir, each node keeps its data in a folder of its own name inside it.
  const optionsOf = (id) => ({
    ...TIMINGS[timing],
    ...nodeOptions,
    id,
    peers,
    listen: '127.0.0.1:0',
    // Each member serves HTTP somewhere of its own: httpUrl may be a function of the id.
    ...(typeof nodeOptions.httpUrl === 'function' ? { httpUrl: nodeOptions.httpUrl(id) } : {}),
    ...(dataDir === undefined ? {} : { dataDir: require('node:path').join(dataDir, id) }),
  });
  const nodes = names.map((id) => new RaftNode(optionsOf(id), kInternal));
  try {
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop({ transferLeadership: false })));
    throw err;
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) a[kInternal].setPeerUrl(b.id, b.url);
  return new TestCluster(nodes, optionsOf);
}

module.exports = { createTestCluster, TestCluster };
