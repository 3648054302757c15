// Typed usage of raftline's replicated key-value state (type-checked by `tsc` in `npm test`).
// A small inventory service: reservations must never oversell, whichever instance serves them.
import { RaftNode, RaftError, type ChangeEvent } from 'raftline';
import { createTestCluster } from 'raftline/testing';

interface Item {
  name: string;
  stock: number;
}

/** Reserves `count` of `sku` atomically (cas under the hood), on any member. */
export async function reserve(node: RaftNode, sku: string, count: number): Promise<boolean> {
  let ok = true;
  await node.update<Item>(`item/${sku}`, (prev) => {
    if (!prev || prev.stock < count) {
      ok = false;
      return prev ?? { name: sku, stock: 0 };
    }
    ok = true;
    return { ...prev, stock: prev.stock - count };
  });
  return ok;
}

/** Logs every stock change of every item, in log order, until `signal` aborts. */
export async function audit(node: RaftNode, signal: AbortSignal): Promise<void> {
  try {
    for await (const change of node.watch({ prefix: 'item/', signal })) {
      const e: ChangeEvent = change;
      const item = e.value as Item | undefined;
      console.log(`#${e.index} ${e.key}: ${item ? item.stock : 'deleted'}`);
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  }
}

export async function main(): Promise<void> {
  const cluster = await createTestCluster({ size: 3 });
  const leader = await cluster.waitForLeader();
  await leader.batch([
    { op: 'set', key: 'item/apple', value: { name: 'apple', stock: 3 } },
    { op: 'set', key: 'item/pear', value: { name: 'pear', stock: 1 } },
  ]);
  const [a, b] = cluster.nodes.filter((n) => n !== leader);
  const results = await Promise.all([reserve(a, 'apple', 2), reserve(b, 'apple', 2)]);
  console.log('reservations', results); // exactly one succeeds
  const apple = await b.get<Item>('item/apple', { consistency: 'linearizable' });
  console.log('apple stock', apple?.stock);
  try {
    await a.set('item/pear', { name: 'pear', stock: 0 }, { forward: false });
  } catch (err) {
    if (err instanceof RaftError && err.code === 'ERR_NOT_LEADER') console.log('write it on', err.leaderId);
  }
  await cluster.close();
}
