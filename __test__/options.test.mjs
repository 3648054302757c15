// Each invalid option throws its TypeError or RangeError, naming the option; nothing starts.
import { describe, it, expect } from 'vitest';
import { RaftNode } from 'raftline';

const base = { id: 'n1' };
const cases = [
  ['options not an object', null, TypeError, /options must be an object/],
  ['id missing', {}, TypeError, /options\.id/],
  ['id with a space', { id: 'a b' }, TypeError, /options\.id/],
  ['id too long', { id: 'x'.repeat(65) }, TypeError, /options\.id/],
  ['peers not an object', { ...base, peers: ['ws://a:1'] }, TypeError, /options\.peers/],
  ['peer url not ws', { ...base, peers: { n2: 'http://h:1' } }, TypeError, /options\.peers\["n2"\]/],
  ['peer name invalid', { ...base, peers: { 'bad name': 'ws://h:1' } }, TypeError, /options\.peers key/],
  ['listen without port', { ...base, listen: 'localhost' }, TypeError, /options\.listen/],
  ['listen port out of range', { ...base, listen: 'localhost:70000' }, RangeError, /options\.listen port/],
  ['heartbeat not a number', { ...base, heartbeatMs: '10' }, TypeError, /options\.heartbeatMs/],
  ['heartbeat zero', { ...base, heartbeatMs: 0 }, RangeError, /options\.heartbeatMs/],
  ['election not above heartbeat', { ...base, heartbeatMs: 50, electionTimeoutMs: 50 }, RangeError, /options\.electionTimeoutMs/],
  ['election fractional', { ...base, electionTimeoutMs: 10.5 }, TypeError, /options\.electionTimeoutMs/],
  ['preVote not boolean', { ...base, preVote: 'yes' }, TypeError, /options\.preVote/],
  ['checkQuorum not boolean', { ...base, checkQuorum: 1 }, TypeError, /options\.checkQuorum/],
  ['maxProposalBytes too big', { ...base, maxProposalBytes: 1 << 30 }, RangeError, /options\.maxProposalBytes/],
  ['snapshotEvery zero', { ...base, snapshotEvery: 0 }, RangeError, /options\.snapshotEvery/],
  ['logLevel unknown', { ...base, logLevel: 'loud' }, TypeError, /options\.logLevel/],
  ['clusterId empty', { ...base, clusterId: '' }, TypeError, /options\.clusterId/],
  ['httpUrl not http', { ...base, httpUrl: 'ftp://x' }, TypeError, /options\.httpUrl/],
  ['unknown option (typo)', { ...base, heartbeatMS: 10 }, TypeError, /options\.heartbeatMS is not a RaftNode option/],
  ['dataDir empty', { ...base, dataDir: '' }, TypeError, /options\.dataDir/],
  ['dataDir not a string', { ...base, dataDir: 5 }, TypeError, /options\.dataDir/],
  ['secret not a string', { ...base, secret: 42 }, TypeError, /options\.secret must be a string/],
  ['secret empty', { ...base, secret: '' }, RangeError, /options\.secret must be 16-1024 bytes/],
  ['secret of 15 bytes', { ...base, secret: 'changeme-789012' }, RangeError, /options\.secret must be 16-1024 bytes, got 15 \(generate one: openssl rand -hex 32\)/],
  ['insecure not boolean', { ...base, insecure: 'yes' }, TypeError, /options\.insecure must be a boolean/],
  ['tls without its certificate', { ...base, tls: {} }, TypeError, /options\.tls\.cert/],
  ['join without peers', { ...base, join: true }, TypeError, /options\.peers must name the members to join/],
  ['join with only itself', { ...base, join: true, peers: { n1: 'ws://127.0.0.1:7001' } }, TypeError, /options\.peers/],
];

describe('options', () => {
  it.each(cases)('%s', (_case, options, errorType, message) => {
    expect(() => new RaftNode(options)).toThrow(errorType);
    expect(() => new RaftNode(options)).toThrow(message);
  });

  // Before: a node listened on every interface without a secret, with only a warning.
  it('beyond loopback, start() refuses without a secret, tls or insecure: true, and loopback works', async () => {
    const open = new RaftNode({ id: 'n1', listen: '0.0.0.0:0', logLevel: 'off' });
    const err = await open.start().catch((e) => e);
    expect(err.code).toBe('ERR_INVALID');
    for (const named of ['secret', 'tls', 'insecure: true', 'openssl rand -hex 32', '0.0.0.0:0']) expect(err.message).toContain(named);
    expect(open.address).toBeNull();
    const routable = new RaftNode({ id: 'n1', peers: { n1: 'ws://db-0.svc:7001' }, listen: '127.0.0.1:0', logLevel: 'off' });
    expect((await routable.start().catch((e) => e)).message).toContain('ws://db-0.svc:7001');
    for (const extra of [{ secret: 'a-secret-of-16-b' }, { insecure: true }]) {
      const node = new RaftNode({ id: 'n1', listen: '0.0.0.0:0', logLevel: 'off', ...extra });
      await node.start();
      expect(node.address).toMatch(/:[1-9]\d*$/);
      await node.stop();
    }
    const loopback = new RaftNode({ id: 'n1', logLevel: 'off' });
    await loopback.start();
    await loopback.stop();
  });

  it('valid options construct without starting anything', () => {
    const node = new RaftNode({ id: 'n1', peers: { n1: 'ws://127.0.0.1:7001', n2: 'ws://db-1.svc:7001/raft' }, heartbeatMs: 20, electionTimeoutMs: 100, logLevel: 'error' });
    expect(node.id).toBe('n1');
    expect(node.address).toBeNull();
    expect(node.isLeader).toBe(false);
  });
});
