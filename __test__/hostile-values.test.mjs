// Every public method given each hostile argument a user might pass by mistake: it throws or
// rejects with a TypeError/RangeError (or a RaftError code), nothing is written, and the node
// keeps serving.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { RaftNode, RaftError } from 'raftline';

class Account {
  constructor() {
    this.balance = 1;
  }
}

const cyclic = { a: { list: [] } };
cyclic.a.list.push(cyclic);

function nested(depth) {
  let v = 1;
  for (let i = 0; i < depth; i++) v = { v };
  return v;
}

// Values that would not read back as written, each with the path the error must name.
const HOSTILE_VALUES = [
  ['a Map', new Map([['a', 1]]), 'value'],
  ['a Set', new Set([1]), 'value'],
  ['a RegExp', /x/g, 'value'],
  ['an Error', new Error('e'), 'value'],
  ['a Promise', Promise.resolve(1), 'value'],
  ['a class instance', new Account(), 'value'],
  ['a nested Map', { user: { tags: [1, new Map()] } }, 'value.user.tags[1]'],
  ['a function', () => 1, 'value'],
  ['a symbol', Symbol('s'), 'value'],
  ['a bigint', 10n, 'value'],
  ['an array hole', [1, , 3], 'value[1]'], // eslint-disable-line no-sparse-arrays
  ['a cyclic value', cyclic, 'value.a.list[0]'],
  ['a value nested 100,000 deep', nested(100_000), 'value.v.v'],
  ['a lone surrogate in a string', { s: 'ok \ud800' }, 'value.s'],
  ['a lone surrogate in a key', { ['k\udc00']: 1 }, 'value['],
  ['a Float32Array', new Float32Array(2), 'value'],
];

const BAD_KEYS = [
  ['undefined', undefined, TypeError],
  ['a number', 1, TypeError],
  ['an object', { toString: () => 'k' }, TypeError],
  ['the empty string', '', RangeError],
  ['4097 bytes', 'k'.repeat(4097), RangeError],
  ['a lone surrogate', 'a\ud800b', TypeError],
];

let node;
const uncaught = [];
const onUncaught = (e) => uncaught.push(e);

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  node = new RaftNode({ id: 'solo', logLevel: 'off' });
  await node.start();
  await node.waitForLeader();
});

afterAll(async () => {
  await node.stop();
  process.off('uncaughtException', onUncaught);
});

/** Runs `call`, which must throw synchronously or reject, and returns the error. */
async function failure(call) {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

describe('hostile values', () => {
  for (const [name, value, path] of HOSTILE_VALUES) {
    it(`${name} is refused by set, cas, batch and update with a TypeError naming ${path}`, async () => {
      const calls = [
        ['set', () => node.set('k', value), 'value'],
        ['cas next', () => node.cas('k', undefined, value), 'next'],
        ['cas expected', () => node.cas('k', value, 1), 'expected'],
        ['batch', () => node.batch([{ op: 'set', key: 'k', value }]), 'ops[0].value'],
        ['update', () => node.update('k', () => value), 'fn()'],
      ];
      // update's fn may be async: a Promise it returns is awaited, not stored.
      if (value instanceof Promise) calls.pop();
      for (const [what, call, root] of calls) {
        const err = await failure(call);
        expect(err, what).toBeInstanceOf(TypeError);
        expect(err.message, what).toContain(path.replace(/^value/, root));
      }
      expect(await node.get('k')).toBeUndefined();
    });
  }
});

describe('hostile keys and arguments', () => {
  for (const [name, key, type] of BAD_KEYS) {
    it(`a key that is ${name} is refused by every method taking a key`, async () => {
      const calls = [
        () => node.set(key, 1),
        () => node.delete(key),
        () => node.cas(key, undefined, 1),
        () => node.update(key, () => 1),
        () => node.incr(key),
        () => node.get(key),
        () => node.getLocal(key),
        () => node.batch([{ op: 'delete', key }]),
      ];
      for (const call of calls) {
        const err = await failure(call);
        expect(err).toBeInstanceOf(type);
        expect(err.message).toMatch(/key/);
      }
    });
  }

  it('other arguments: wrong types throw TypeError, out-of-range numbers RangeError', async () => {
    const cases = [
      [() => node.incr('n', '1'), TypeError, 'by'],
      [() => node.incr('n', NaN), RangeError, 'by'],
      [() => node.incr('n', Infinity), RangeError, 'by'],
      [() => node.set('k', 1, { timeoutMs: -1 }), RangeError, 'opts.timeoutMs'],
      [() => node.set('k', 1, { signal: {} }), TypeError, 'opts.signal'],
      [() => node.update('k', 'not a function'), TypeError, 'fn'],
      [() => node.entries({ prefix: 'a\ud800' }), TypeError, 'opts.prefix'],
      [() => node.watch({ prefix: 1 }), TypeError, 'opts.prefix'],
      [() => node.propose('text'), TypeError, 'data'],
      [() => node.batch({}), TypeError, 'ops'],
      [() => node.batch([{ op: 'incr', key: 'k' }]), TypeError, 'ops[0].op'],
      [() => node.runWhileLeader(null), TypeError, 'job'],
      [() => node.get('k', { consistency: 'eventual' }), TypeError, 'opts.consistency'],
    ];
    for (const [call, type, name] of cases) {
      const err = await failure(call);
      expect(err).toBeInstanceOf(type);
      expect(err.message).toContain(name);
    }
  });

  it('incr on a value that is not a number rejects ERR_INVALID and changes nothing', async () => {
    await node.set('word', 'five');
    const err = await failure(() => node.incr('word'));
    expect(err).toBeInstanceOf(RaftError);
    expect(err.code).toBe('ERR_INVALID');
    expect(await node.get('word')).toBe('five');
  });

  it('after all of that the node still serves, with nothing stray written, and nothing escaped', async () => {
    const { index } = await node.set('after', { ok: true });
    expect(index).toBeGreaterThan(0);
    expect(await node.entries()).toEqual([
      ['after', { ok: true }],
      ['word', 'five'],
    ]);
    expect(uncaught).toEqual([]);
  });
});
