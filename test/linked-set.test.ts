// core/linked-set.ts: a set linked through its members.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkedSet } from '../src/core/linked-set.js';

test('add, has, delete and size, in the order of insertion; adding twice or deleting what is not there changes nothing', () => {
  const set = new LinkedSet<{ n: number }>();
  const [a, b, c] = [{ n: 1 }, { n: 2 }, { n: 3 }];
  assert.equal(set.size, 0);
  assert.equal(set.has(a), false);
  set.add(a).add(b).add(c).add(b);
  assert.equal(set.size, 3);
  assert.deepEqual([...set], [a, b, c]);
  assert.equal(set.delete(b), true);
  assert.equal(set.delete(b), false);
  assert.equal(set.has(b), false);
  assert.deepEqual([...set], [a, c]);
  set.add(b);
  assert.deepEqual([...set], [a, c, b], 'added again: at the end');
  for (const x of [a, b, c]) set.delete(x);
  assert.equal(set.size, 0);
  assert.deepEqual([...set], []);
  set.add(c);
  assert.deepEqual([...set], [c]);
});

test('a member taken out keeps no link, and its neighbours link to each other', () => {
  const set = new LinkedSet<object>();
  const [a, b, c] = [{}, {}, {}];
  set.add(a).add(b).add(c);
  set.delete(b);
  for (const key of Object.getOwnPropertySymbols(b)) assert.equal((b as Record<symbol, unknown>)[key], undefined, `${String(key)} is cleared`);
  assert.deepEqual([...set], [a, c]);
  set.delete(a);
  set.delete(c);
  for (const x of [a, c]) for (const key of Object.getOwnPropertySymbols(x)) assert.equal((x as Record<symbol, unknown>)[key], undefined);
});

test('an object can be in two sets; iteration skips members deleted meanwhile and goes on', () => {
  const one = new LinkedSet<object>();
  const two = new LinkedSet<object>();
  const items = [{}, {}, {}, {}];
  for (const x of items) { one.add(x); two.add(x); }
  two.delete(items[1]!);
  assert.deepEqual([...one], items);
  assert.deepEqual([...two], [items[0], items[2], items[3]]);
  const seen: object[] = [];
  for (const x of one) {
    seen.push(x);
    if (x === items[0]) { one.delete(items[0]!); one.delete(items[2]!); }
  }
  assert.deepEqual(seen, [items[0], items[1], items[3]]);
  assert.deepEqual([...one], [items[1], items[3]]);
  assert.equal(one.size, 2);
});
