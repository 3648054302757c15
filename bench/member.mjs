// One raftline node in a process of its own, for bench/run.mjs's failover figures: the
// parent SIGKILLs the leader's process. Argument: the node's options (JSON). Over IPC it
// answers `status` and `set`, and says `ready` once started.
import { RaftNode } from 'raftline';

const node = new RaftNode(JSON.parse(process.argv[2]));
await node.start();
process.send({ ready: true });
process.on('message', async ({ rid, cmd, args }) => {
  try {
    const result = cmd === 'set' ? await node.set(args.key, args.value, { timeoutMs: args.timeoutMs, forward: false }) : node.status();
    process.send({ rid, ok: true, result });
  } catch (err) {
    process.send({ rid, ok: false, code: err.code });
  }
});
process.on('disconnect', () => node.stop({ transferLeadership: false }));
