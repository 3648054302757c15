import fence from './fence.js';

export const { FENCE_HEADER, ensureFenceTable, checkFence, fenceHeader, requireFence, MemoryFenceStore } = fence;
export default fence;
