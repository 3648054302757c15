// One raftline node in a process of its own, for bench/run.mjs's figures of a cluster of
// processes (as deployed): failover (the parent SIGKILLs the leader's process) and writes
// issued in the leader's own process. Argument: the node's options (JSON). Over IPC it
// answers `status`, `set`, `latency` and `throughput`, and says `ready` once started.
import { RaftNode } from 'raftline';
import { writesPerSecond, writeLatency } from './workload.mjs';

const node = new RaftNode(JSON.parse(process.argv[2]));
const commands = {
  status: () => node.status(),
  set: (args) => node.set(args.key, args.value, { timeoutMs: args.timeoutMs, forward: false }),
  latency: ({ count }) => writeLatency(node, count, { opts: { forward: false } }),
  throughput: ({ inFlight, total }) => writesPerSecond(node, inFlight, total, { opts: { forward: false } }),
};

await node.start();
process.send({ ready: true });
process.on('message', async ({ rid, cmd, args }) => {
  try {
    process.send({ rid, ok: true, result: await commands[cmd](args) });
  } catch (err) {
    process.send({ rid, ok: false, code: err.code });
  }
});
process.on('disconnect', () => node.stop({ transferLeadership: false }));
