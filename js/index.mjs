// ESM entry: the same classes as the CommonJS entry (one copy of the native binding).
import raftline from './index.js';

export const { RaftNode, RaftError } = raftline;
export default raftline;
