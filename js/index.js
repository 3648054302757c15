'use strict';
// raftline: Raft consensus embedded in Node.js services. See index.d.ts for the API.

const { RaftNode } = require('./node.js');
const { RaftError } = require('./errors.js');

module.exports = { RaftNode, RaftError };
