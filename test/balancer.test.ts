import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  BALANCER_KINDS,
  ConsistentHashBalancer,
  createBalancer,
  type Pickable,
  type RandomInt,
} from '../src/upstream/balancer/index.js';
import { hash32 } from '../src/upstream/balancer/hash.js';

function endpoint(id: string, fields: Partial<Omit<Pickable, 'id'>> = {}): Pickable {
  return { id, weight: 1, inflight: 0, ewmaMs: 30, ewmaStamp: 0, ewmaSamples: 10, peakMs: 0, peakStamp: 0, warmingSince: -1e9, ...fields };
}

function members(count: number): Pickable[] {
  return Array.from({ length: count }, (_, i) => endpoint(`10.0.0.${i + 1}:8080`));
}

/** A RandomInt that replays `values` (each taken modulo n) in a loop. */
function replay(...values: number[]): RandomInt {
  let i = 0;
  return (n) => values[i++ % values.length]! % n;
}

function countPicks(pick: () => Pickable, times: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < times; i++) {
    const id = pick().id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

function assertWithin(actual: number, expected: number, tolerance: number, what: string): void {
  const low = expected * (1 - tolerance);
  const high = expected * (1 + tolerance);
  assert.ok(actual >= low && actual <= high, `${what}: ${actual} not within ${low}..${high}`);
}

describe('every balancer', () => {
  for (const kind of BALANCER_KINDS) {
    test(`${kind}: returns the only candidate`, () => {
      const all = members(4);
      const balancer = createBalancer(kind);
      balancer.setMembers(all);
      for (let i = 0; i < 50; i++) {
        assert.equal(balancer.pick([all[2]!], `key-${i}`), all[2]);
        assert.equal(balancer.pick([all[2]!], undefined), all[2]);
      }
    });

    test(`${kind}: returns only candidates`, () => {
      const all = members(6);
      const balancer = createBalancer(kind);
      balancer.setMembers(all);
      for (let i = 0; i < 2_000; i++) {
        const candidates = all.filter((_, m) => ((i * 7 + m * 13) % 5) < 2 || m === i % 6);
        const chosen = balancer.pick(candidates, i % 3 === 0 ? undefined : `key-${i}`);
        assert.ok(candidates.includes(chosen), `${chosen.id} is not a candidate`);
      }
    });

    test(`${kind}: kind matches the factory argument`, () => {
      assert.equal(createBalancer(kind).kind, kind);
    });
  }
});

describe('hash32', () => {
  test('is murmur3 x86_32 of the UTF-16LE bytes', () => {
    // Published murmur3 vectors, with the bytes read as little-endian 16-bit code units.
    assert.equal(hash32(''), 0);
    assert.equal(hash32('', 1), 0x514e28b7);
    assert.equal(hash32('\u4321'), 0xa0f7b07a);
    assert.equal(hash32('\u4321\u8765'), 0xf55b516b);
  });

  test('spreads sequential keys evenly over 16 buckets', () => {
    const buckets = new Array<number>(16).fill(0);
    for (let i = 0; i < 32_000; i++) buckets[hash32(`key-${i}`) >>> 28]!++;
    for (const count of buckets) assertWithin(count, 2_000, 0.1, 'bucket');
  });
});

describe('round-robin', () => {
  test('gives every candidate exactly the same share, in turn', () => {
    const all = members(3);
    const balancer = createBalancer('round-robin');
    balancer.setMembers(all);
    const first = [0, 1, 2, 3, 4, 5].map(() => balancer.pick(all, undefined).id);
    assert.deepEqual(first, [all[0]!.id, all[1]!.id, all[2]!.id, all[0]!.id, all[1]!.id, all[2]!.id]);
    const counts = countPicks(() => balancer.pick(all, undefined), 3_000);
    assert.deepEqual([...counts.values()], [1_000, 1_000, 1_000]);
  });
});

describe('weighted-round-robin', () => {
  const weighted = (): Pickable[] => [
    endpoint('a', { weight: 5 }),
    endpoint('b', { weight: 1 }),
    endpoint('c', { weight: 1 }),
  ];

  test('5:1:1 is the smooth nginx sequence a a b a c a a', () => {
    const all = weighted();
    const balancer = createBalancer('weighted-round-robin');
    balancer.setMembers(all);
    for (let cycle = 0; cycle < 3; cycle++) {
      const sequence = [0, 1, 2, 3, 4, 5, 6].map(() => balancer.pick(all, undefined).id).join(' ');
      assert.equal(sequence, 'a a b a c a a');
    }
  });

  test('5:1:1 gives exact proportions over 700 picks and no member runs past its weight', () => {
    const all = weighted();
    const balancer = createBalancer('weighted-round-robin');
    balancer.setMembers(all);
    const counts = new Map<string, number>();
    const longest = new Map<string, number>();
    let previous = '';
    let run = 0;
    for (let i = 0; i < 700; i++) {
      const id = balancer.pick(all, undefined).id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
      run = id === previous ? run + 1 : 1;
      previous = id;
      longest.set(id, Math.max(longest.get(id) ?? 0, run));
    }
    assert.deepEqual(Object.fromEntries(counts), { a: 500, b: 100, c: 100 });
    // a's longest run is 4, where one cycle's closing "a a" meets the next one's opening "a a".
    assert.deepEqual(Object.fromEntries(longest), { a: 4, b: 1, c: 1 });
  });

  test('shares among a subset of the members follow their weights', () => {
    const all = weighted();
    const balancer = createBalancer('weighted-round-robin');
    balancer.setMembers(all);
    const subset = [all[0]!, all[2]!];
    const counts = countPicks(() => balancer.pick(subset, undefined), 600);
    assert.deepEqual(Object.fromEntries(counts), { a: 500, c: 100 });
  });

  test('weight 0 is never picked while another candidate has weight', () => {
    const all = [endpoint('a', { weight: 0 }), endpoint('b', { weight: 2 }), endpoint('c', { weight: 1 })];
    const balancer = createBalancer('weighted-round-robin');
    balancer.setMembers(all);
    const counts = countPicks(() => balancer.pick(all, undefined), 300);
    assert.deepEqual(Object.fromEntries(counts), { b: 200, c: 100 });
    assert.equal(balancer.pick([all[0]!], undefined), all[0]);
  });
});

describe('least-request', () => {
  test('of the two sampled, prefers fewer requests in flight', () => {
    const busy = endpoint('busy', { inflight: 5 });
    const idle = endpoint('idle', { inflight: 1 });
    // replay(0, 0): the pair is candidates[0] then candidates[1].
    const balancer = createBalancer('least-request', { random: replay(0, 0) });
    balancer.setMembers([busy, idle]);
    assert.equal(balancer.pick([busy, idle], undefined), idle);
    assert.equal(balancer.pick([idle, busy], undefined), idle);
  });

  test('compares load per unit of weight, and a tie goes to the first sampled', () => {
    const heavy = endpoint('heavy', { weight: 3, inflight: 5 }); // 6 / 3 = 2
    const light = endpoint('light', { weight: 1, inflight: 2 }); // 3 / 1 = 3
    const balancer = createBalancer('least-request', { random: replay(0, 0) });
    assert.equal(balancer.pick([light, heavy], undefined), heavy);
    const a = endpoint('a', { inflight: 2 });
    const b = endpoint('b', { inflight: 2 });
    assert.equal(createBalancer('least-request', { random: replay(1, 0) }).pick([a, b], undefined), b);
    assert.equal(createBalancer('least-request', { random: replay(0, 0) }).pick([a, b], undefined), a);
  });

  test('samples two distinct candidates', () => {
    const all = [endpoint('a'), endpoint('b', { inflight: 1 })];
    // Both draws would land on index 1; the second is shifted past the first.
    const balancer = createBalancer('least-request', { random: replay(1, 1) });
    assert.equal(balancer.pick(all, undefined), all[0]);
  });

  test('never picks the single most loaded of three', () => {
    const all = [endpoint('a'), endpoint('b'), endpoint('c', { inflight: 10 })];
    const balancer = createBalancer('least-request');
    const counts = countPicks(() => balancer.pick(all, undefined), 3_000);
    assert.equal(counts.get('c'), undefined);
  });

  test('spreads evenly when every load is equal', () => {
    const all = members(3);
    const balancer = createBalancer('least-request');
    balancer.setMembers(all);
    const counts = countPicks(() => balancer.pick(all, undefined), 30_000);
    for (const member of all) assertWithin(counts.get(member.id) ?? 0, 10_000, 0.1, member.id);
  });
});

describe('peak-ewma', () => {
  // replay(0, 0, CHEAPER): the pair is candidates[0] then candidates[1], and the coin says "the
  // cheaper one" (its last value is never below the costlier one's odds).
  const CHEAPER = (1 << 30) - 1;

  test('prefers the lower estimate × (inflight + 1)', () => {
    const slowIdle = endpoint('slow-idle', { ewmaMs: 100, inflight: 0 }); // 100
    const fastBusy = endpoint('fast-busy', { ewmaMs: 20, inflight: 9 }); // 200
    const fastLight = endpoint('fast-light', { ewmaMs: 20, inflight: 2 }); // 60
    const balancer = createBalancer('peak-ewma', { random: replay(0, 0, CHEAPER), now: () => 0 });
    assert.equal(balancer.pick([slowIdle, fastBusy], undefined), slowIdle);
    assert.equal(balancer.pick([fastBusy, slowIdle], undefined), slowIdle);
    assert.equal(balancer.pick([slowIdle, fastLight], undefined), fastLight);
  });

  test('divides the cost by weight', () => {
    const heavy = endpoint('heavy', { ewmaMs: 50, weight: 4 }); // 12.5
    const light = endpoint('light', { ewmaMs: 20, weight: 1 }); // 20
    const balancer = createBalancer('peak-ewma', { random: replay(0, 0, CHEAPER), now: () => 0 });
    assert.equal(balancer.pick([light, heavy], undefined), heavy);
  });

  test('the costlier of the pair is taken with odds 1 / (1 + r²) for a cost ratio r', () => {
    const fast = endpoint('fast', { ewmaMs: 10 });
    const slow = endpoint('slow', { ewmaMs: 30 }); // 3× the latency, past the 1.5× band: r = 2, odds 0.2
    const coin = (fraction: number) => createBalancer('peak-ewma', { random: replay(0, 0, Math.floor(fraction * (1 << 30))), now: () => 0 });
    assert.equal(coin(0.19).pick([fast, slow], undefined), slow);
    assert.equal(coin(0.21).pick([fast, slow], undefined), fast);
    assert.equal(coin(0.19).pick([slow, fast], undefined), slow);
    // In-flight requests are not banded: 1 in flight against none is r = 2 as well.
    const busy = endpoint('busy', { ewmaMs: 10, inflight: 1 });
    assert.equal(coin(0.19).pick([fast, busy], undefined), busy);
    assert.equal(coin(0.21).pick([busy, fast], undefined), fast);
  });

  test('latency estimates within 1.5× of each other are a fair coin', () => {
    const a = endpoint('a', { ewmaMs: 10 });
    const b = endpoint('b', { ewmaMs: 14 });
    const coin = (fraction: number) => createBalancer('peak-ewma', { random: replay(0, 0, Math.floor(fraction * (1 << 30))), now: () => 0 });
    // Equal costs: the first drawn, whatever the coin (it was drawn at random).
    assert.equal(coin(0).pick([a, b], undefined), a);
    assert.equal(coin(0.99).pick([b, a], undefined), b);
  });

  test('weight 0 is never taken against a positive weight', () => {
    const off = endpoint('off', { weight: 0, ewmaMs: 1 });
    const on = endpoint('on', { ewmaMs: 1_000 });
    const balancer = createBalancer('peak-ewma', { now: () => 0 });
    const counts = countPicks(() => balancer.pick([off, on], undefined), 1_000);
    assert.deepEqual(Object.fromEntries(counts), { on: 1_000 });
  });

  test('with a real random source and load, the slower endpoint still gets some traffic', () => {
    const fast = endpoint('fast', { ewmaMs: 10 });
    const slow = endpoint('slow', { ewmaMs: 40 });
    const all = [fast, slow];
    const balancer = createBalancer('peak-ewma', { now: () => 0 });
    balancer.setMembers(all);
    // Keep 20 requests in flight; each step one random outstanding request completes.
    const outstanding: Pickable[] = [];
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const chosen = balancer.pick(all, undefined);
      chosen.inflight++;
      outstanding.push(chosen);
      counts.set(chosen.id, (counts.get(chosen.id) ?? 0) + 1);
      if (outstanding.length > 20) {
        const done = outstanding.splice(Math.floor(Math.random() * outstanding.length), 1)[0]!;
        done.inflight--;
      }
    }
    const fastShare = (counts.get('fast') ?? 0) / 10_000;
    const slowShare = (counts.get('slow') ?? 0) / 10_000;
    assert.ok(fastShare > slowShare, `fast ${fastShare} should beat slow ${slowShare}`);
    assert.ok(slowShare > 0.05, `slow got only ${slowShare}`);
  });
});

describe('consistent-hash', () => {
  const KEYS = Array.from({ length: 30_000 }, (_, i) => `user-${i}`);

  function assignments(all: readonly Pickable[], candidates: readonly Pickable[] = all): string[] {
    const balancer = createBalancer('consistent-hash');
    balancer.setMembers(all);
    return KEYS.map((key) => balancer.pick(candidates, key).id);
  }

  test('maps a key to the same member every time, whatever the member order', () => {
    const all = members(5);
    const balancer = createBalancer('consistent-hash');
    balancer.setMembers(all);
    const reordered = createBalancer('consistent-hash');
    reordered.setMembers([...all].reverse());
    for (const key of KEYS.slice(0, 2_000)) {
      const owner = balancer.pick(all, key);
      assert.equal(balancer.pick(all, key), owner);
      assert.equal(reordered.pick(all, key), owner);
    }
  });

  test('spreads 30 000 keys over 3 members within ±15% of a third each', (t) => {
    const all = members(3);
    const counts = new Map<string, number>();
    for (const id of assignments(all)) counts.set(id, (counts.get(id) ?? 0) + 1);
    t.diagnostic(`shares: ${[...counts.values()].map((c) => (c / KEYS.length).toFixed(4)).join(' ')}`);
    for (const member of all) assertWithin(counts.get(member.id) ?? 0, 10_000, 0.15, member.id);
  });

  test('adding a 4th member moves about a quarter of keys, all to the new member', (t) => {
    const three = members(3);
    const four = [...three, endpoint('10.0.0.4:8080')];
    const before = assignments(three);
    const after = assignments(four);
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      assert.equal(after[i], four[3]!.id, `${KEYS[i]} moved between old members`);
    }
    const share = moved / KEYS.length;
    t.diagnostic(`moved on add: ${moved} of ${KEYS.length} = ${share.toFixed(4)} (ideal 0.25)`);
    assert.ok(share >= 0.15 && share <= 0.35, `moved ${share}`);
  });

  test('removing one of 4 moves only the keys the removed member owned', (t) => {
    const four = members(4);
    const removed = four[1]!;
    const three = four.filter((m) => m !== removed);
    const before = assignments(four);
    const after = assignments(three);
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      assert.equal(before[i], removed.id, `${KEYS[i]} moved although its member stayed`);
    }
    const owned = before.filter((id) => id === removed.id).length;
    assert.equal(moved, owned);
    t.diagnostic(`moved on remove: ${moved} of ${KEYS.length} = ${(moved / KEYS.length).toFixed(4)} (ideal 0.25)`);
  });

  test('when the owner is not a candidate, picks the next member on the ring', () => {
    const all = members(4);
    const balancer = createBalancer('consistent-hash');
    balancer.setMembers(all);
    for (const key of KEYS.slice(0, 3_000)) {
      const owner = balancer.pick(all, key);
      const others = all.filter((m) => m !== owner);
      // The next member clockwise is whoever would own the key with the owner removed.
      const ring = createBalancer('consistent-hash');
      ring.setMembers(others);
      const next = balancer.pick(others, key);
      assert.notEqual(next, owner);
      assert.equal(next, ring.pick(others, key), key);
      assert.equal(balancer.pick(others, key), next, 'stable for the same key');
    }
  });

  test('without a key, goes round robin over the candidates', () => {
    const all = members(3);
    const balancer = createBalancer('consistent-hash');
    balancer.setMembers(all);
    const counts = countPicks(() => balancer.pick(all, undefined), 300);
    assert.deepEqual([...counts.values()], [100, 100, 100]);
  });

  test('gives a member points in proportion to its weight', () => {
    const all = [endpoint('a', { weight: 3 }), endpoint('b'), endpoint('c')];
    const balancer = new ConsistentHashBalancer();
    balancer.setMembers(all);
    const counts = countPicks(() => balancer.pick(all, KEYS[Math.floor(Math.random() * KEYS.length)]), 30_000);
    assertWithin(counts.get('a') ?? 0, 18_000, 0.15, 'a');
  });

  test('rejects a vnodes count that is not a positive integer', () => {
    assert.throws(() => createBalancer('consistent-hash', { vnodes: 0 }), { code: 'TANDEM_ERR_INTERNAL' });
  });
});
