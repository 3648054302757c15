import express from './express.js';

export const { leaderOnly, raftRouter, errorHandler } = express;
export default express;
