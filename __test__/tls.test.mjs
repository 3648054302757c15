// TLS on the peer port from JavaScript: PEM strings or Buffers, a cluster over wss://,
// failover over TLS, and TLS material that is wrong refused with a reason.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RaftNode } from 'raftline';
import { waitFor } from './helpers.mjs';
import { clusterPerTest } from './clusters.mjs';

const fixture = (name) => readFileSync(fileURLToPath(new URL(`../tests/fixtures/tls/${name}`, import.meta.url)));
const tls = { cert: fixture('member.pem'), key: fixture('member-key.pem').toString(), ca: fixture('ca.pem') };

const cluster = clusterPerTest();

describe('tls', () => {
  it('a cluster elects, replicates and fails over over wss://', async () => {
    const c = await cluster({ tls });
    const leader = await c.waitForLeader();
    expect(leader.url).toMatch(/^wss:\/\//);
    const { index } = await leader.set('k', 'over tls');
    for (const n of c.nodes) {
      await waitFor(() => n.status().appliedIndex >= index, { what: `${n.id} applies` });
      expect(n.getLocal('k')).toBe('over tls');
    }
    await c.kill(leader.id);
    const next = await c.waitForLeader();
    expect(next.id).not.toBe(leader.id);
    await next.set('k', 'after failover');
  });

  it.each([
    ['tls not an object', 'yes', TypeError, /options\.tls must be an object/],
    ['unknown tls field', { ...tls, password: 'x' }, TypeError, /options\.tls\.password is not a TLS option/],
    ['cert missing', { key: tls.key }, TypeError, /options\.tls\.cert must be a PEM string or Buffer/],
    ['key empty', { ...tls, key: '' }, RangeError, /options\.tls\.key/],
  ])('%s', (_case, value, errorType, message) => {
    const make = () => new RaftNode({ id: 'n1', tls: value });
    expect(make).toThrow(errorType);
    expect(make).toThrow(message);
  });

  it.each([
    ['cert not PEM', { ...tls, cert: 'hello' }, /tls\.cert holds no certificate/],
    ['key of another certificate', { ...tls, key: fixture('stranger-key.pem') }, /do not go together/],
    ['key not PEM', { ...tls, key: 'hello' }, /tls\.key is not a PEM private key/],
  ])('%s: start() rejects with ERR_INVALID and the reason', async (_case, value, message) => {
    const node = new RaftNode({ id: 'n1', tls: value, listen: '127.0.0.1:0' });
    await expect(node.start()).rejects.toMatchObject({ code: 'ERR_INVALID', message: expect.stringMatching(message) });
    expect(node.role).toBe('stopped');
  });

  it('peer URLs must be wss:// with tls, and ws:// without', () => {
    expect(() => new RaftNode({ id: 'n1', tls, peers: { n2: 'ws://127.0.0.1:7001' } })).toThrow(/options\.peers\.n2 must be a wss:\/\/ URL/);
    expect(() => new RaftNode({ id: 'n1', peers: { n2: 'wss://127.0.0.1:7001' } })).toThrow(/wss:\/\/ needs options\.tls/);
  });
});
