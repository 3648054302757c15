import testing from './testing.js';

export const { createTestCluster, TestCluster } = testing;
export default testing;
