// One member for the rolling upgrade (rolling.mjs), in a process of its own, from the raftline
// package at argv[2] (this checkout or an older commit's worktree) with the options in
// argv[3] (JSON). Over IPC it answers `set`, `state` (every key and value, read locally) and
// `status`, and `stop` stops it gracefully (handing leadership over).
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const { RaftNode } = await import(pathToFileURL(path.join(process.argv[2], 'js', 'index.js')).href);
const node = new RaftNode(JSON.parse(process.argv[3]));
await node.start();
process.send({ ready: true });
process.on('message', async ({ rid, cmd, args }) => {
  try {
    let result;
    if (cmd === 'set') result = await node.set(args.key, args.value, { timeoutMs: 2000 });
    else if (cmd === 'state') result = await node.entries({ consistency: 'local' });
    else if (cmd === 'status') result = node.status();
    else if (cmd === 'stop') result = await node.stop();
    process.send({ rid, ok: true, result: result ?? null });
    if (cmd === 'stop') process.disconnect();
  } catch (err) {
    process.send({ rid, ok: false, code: err.code, message: err.message });
  }
});
