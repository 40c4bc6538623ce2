import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/core/clock.js';
import { Endpoint, SLOW_START_MS, type PoolSettings } from '../src/upstream/endpoint.js';
import { PeakEwmaBalancer, latencyEstimate } from '../src/upstream/balancer/peak-ewma.js';

/**
 * The peak-EWMA balancer's behaviour over time, on a FakeClock: requests arrive on a fixed
 * schedule, each endpoint answers after the latency its model draws, and the answer is folded
 * into the real Endpoint's estimate. Random draws come from a seeded generator, so every run
 * sees the same numbers.
 */

const SETTINGS: PoolSettings = { maxConnections: 1, connectTimeoutMs: 1_000, keepAliveTimeoutMs: 1_000, maxResponseHeaderSize: 16_384 };
const made: Endpoint[] = [];
after(async () => {
  // The pools never connected; closing them only releases undici's bookkeeping.
  await Promise.all(made.map((e) => e.pool.close()));
});

/** mulberry32: a small seeded generator, uniform in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Member {
  endpoint: Endpoint;
  /** Latency (ms) of the next answer; may change during a run. */
  latency: () => number;
  /** Times (ms) at which requests were sent to it. */
  picks: number[];
}

class Sim {
  readonly clock = new FakeClock(10_000);
  readonly rand: () => number;
  readonly balancer: PeakEwmaBalancer<Endpoint>;
  readonly members: Member[] = [];
  private nextPort = 1;

  constructor(seed: number) {
    this.rand = seeded(seed);
    this.balancer = new PeakEwmaBalancer<Endpoint>((n) => Math.floor(this.rand() * n), () => this.clock.now());
  }

  /** A typical fast Node backend: about `ms`, ±40 %, and one answer in 200 twenty times slower. */
  noisy(ms: number): () => number {
    return () => (this.rand() < 0.005 ? ms * 20 : ms * (0.6 + 0.8 * this.rand()));
  }

  add(latency: () => number): Member {
    const endpoint = new Endpoint({ host: '127.0.0.1', port: this.nextPort++, weight: 1 }, SETTINGS, {}, this.clock.now());
    made.push(endpoint);
    const member: Member = { endpoint, latency, picks: [] };
    this.members.push(member);
    this.balancer.setMembers(this.members.map((m) => m.endpoint));
    return member;
  }

  /** Sends requests at `rate` per second for `ms`, starting now; answers arrive as drawn. */
  run(rate: number, ms: number): void {
    const start = this.clock.now();
    const count = Math.round((rate * ms) / 1_000);
    const candidates = this.members.map((m) => m.endpoint);
    const byEndpoint = new Map(this.members.map((m) => [m.endpoint, m]));
    for (let i = 0; i < count; i++) {
      const at = start + (i * 1_000) / rate;
      this.clock.advance(at - this.clock.now());
      const chosen = this.balancer.pick(candidates, undefined);
      const member = byEndpoint.get(chosen)!;
      member.picks.push(at);
      chosen.inflight++;
      const latency = member.latency();
      this.clock.setTimeout(() => {
        chosen.inflight--;
        chosen.observeLatency(latency, this.clock.now());
      }, latency);
    }
    this.clock.advance(start + ms - this.clock.now());
  }

  /** Requests each member got in [from, to). */
  counts(from: number, to: number): number[] {
    return this.members.map((m) => m.picks.filter((t) => t >= from && t < to).length);
  }

  /** Longest time (ms) in [from, to) during which `member` got no request. */
  longestGap(member: Member, from: number, to: number): number {
    let last = from;
    let gap = 0;
    for (const t of member.picks) {
      if (t < from || t >= to) continue;
      gap = Math.max(gap, t - last);
      last = t;
    }
    return Math.max(gap, to - last);
  }
}

function spread(counts: number[]): number {
  return Math.max(...counts) / Math.min(...counts);
}

describe('peak-ewma over time (FakeClock)', () => {
  for (const rate of [300, 3_000]) {
    test(`identical endpoints at ${rate}/s share within 1.3× of each other after a 2 s warm-up`, (t) => {
      // Several seeds: one lucky run proves little about noise.
      for (const seed of [1, 2, 3, 4]) {
        const sim = new Sim(seed * rate);
        for (let k = 0; k < 3; k++) sim.add(sim.noisy(1));
        const t0 = sim.clock.now();
        sim.run(rate, 10_000);
        const whole = sim.counts(t0 + 2_000, t0 + 10_000);
        const gaps = sim.members.map((m) => sim.longestGap(m, t0 + 2_000, t0 + 10_000));
        t.diagnostic(`seed ${seed}: shares ${whole.join(' / ')} (max/min ${spread(whole).toFixed(2)}), longest gap ${Math.max(...gaps).toFixed(0)} ms`);
        assert.ok(spread(whole) <= 1.25, `shares ${whole.join(' / ')}`);
        assert.ok(Math.max(...gaps) <= 500, `an endpoint went ${Math.max(...gaps)} ms without a request`);
      }
    });
  }

  test('one slow sample costs an endpoint its traffic for well under a second, not 10 s', (t) => {
    const sim = new Sim(7);
    const members = [0, 1, 2].map(() => sim.add(sim.noisy(1)));
    sim.run(300, 3_000);
    const spiked = members[0]!;
    // The next answer of endpoint 0 is a 100 ms pause (a GC, a cold connection).
    const normal = spiked.latency;
    let once = true;
    spiked.latency = () => (once ? ((once = false), 100) : normal());
    const from = sim.clock.now();
    sim.run(300, 3_000);
    const gap = sim.longestGap(spiked, from, from + 3_000);
    const after1s = sim.counts(from + 1_000, from + 3_000);
    t.diagnostic(`longest gap ${gap.toFixed(0)} ms; shares in the 2 s after the first: ${after1s.join(' / ')}`);
    assert.ok(gap <= 400, `no request for ${gap} ms`);
    assert.ok(spread(after1s) <= 1.3, `shares ${after1s.join(' / ')}`);
  });

  test('a 5× slower endpoint gets a small share; once it recovers its share is fair again within 2 s', (t) => {
    const sim = new Sim(11);
    const members = [0, 1, 2].map(() => sim.add(sim.noisy(2)));
    sim.run(300, 3_000);
    const slow = members[2]!;
    slow.latency = sim.noisy(10);
    const slowFrom = sim.clock.now();
    sim.run(300, 4_000);
    const whileSlow = sim.counts(slowFrom + 500, slowFrom + 4_000);
    const slowShare = whileSlow[2]! / whileSlow.reduce((a, b) => a + b, 0);
    slow.latency = sim.noisy(2);
    const recovered = sim.clock.now();
    sim.run(300, 4_000);
    // Fair again = the end of the first 500 ms window in which it had at least a third ÷ 1.3.
    let fairAt = Infinity;
    for (let s = 0; s <= 3_500 && fairAt === Infinity; s += 50) {
      const c = sim.counts(recovered + s, recovered + s + 500);
      if (c[2]! / c.reduce((a, b) => a + b, 0) >= 1 / 3 / 1.3) fairAt = s + 500;
    }
    const settled = sim.counts(recovered + 2_000, recovered + 4_000);
    t.diagnostic(`share while 5× slower: ${(slowShare * 100).toFixed(1)} %; fair again ${fairAt} ms after recovering; 2–4 s after: ${settled.join(' / ')}`);
    assert.ok(slowShare <= 0.15 && slowShare > 0, `slow share ${slowShare}`);
    assert.ok(sim.longestGap(slow, slowFrom, slowFrom + 4_000) <= 1_000, 'the slow endpoint must keep getting probes');
    assert.ok(fairAt <= 2_000, `fair again only after ${fairAt} ms`);
    assert.ok(spread(settled) <= 1.3, `shares 2–4 s after recovering: ${settled.join(' / ')}`);
  });

  test('a new endpoint ramps up: at most its fair share in its first second, never left without traffic', (t) => {
    const sim = new Sim(13);
    for (let k = 0; k < 3; k++) sim.add(sim.noisy(1));
    sim.run(300, 3_000);
    // The newcomer is cold: its first answers are slow, as a fresh Node process's are.
    let served = 0;
    const warm = sim.noisy(1);
    const joined = sim.clock.now();
    const newcomer = sim.add(() => (served++ < 5 ? 15 : warm()));
    assert.equal(latencyEstimate(newcomer.endpoint, joined, sim.balancer.typicalLatencyMs), sim.balancer.typicalLatencyMs);
    sim.run(300, 4_000);
    const first = sim.counts(joined, joined + SLOW_START_MS);
    const firstShare = first[3]! / first.reduce((a, b) => a + b, 0);
    let fairAt = Infinity;
    for (let s = 0; s <= 3_500 && fairAt === Infinity; s += 50) {
      const c = sim.counts(joined + s, joined + s + 500);
      if (c[3]! / c.reduce((a, b) => a + b, 0) >= 1 / 4 / 1.3) fairAt = s + 500;
    }
    const gaps = sim.members.map((m) => sim.longestGap(m, joined, joined + 4_000));
    t.diagnostic(`newcomer's share in its first second ${(firstShare * 100).toFixed(1)} % (fair 25 %); fair after ${fairAt} ms; longest gaps ${gaps.map((g) => g.toFixed(0)).join(' / ')} ms`);
    assert.ok(firstShare <= 0.25 && firstShare > 0, `first-second share ${firstShare}`);
    assert.ok(fairAt <= 3_000, `the newcomer reached a fair share only after ${fairAt} ms`);
    for (const gap of gaps) assert.ok(gap <= 1_000, `an endpoint went ${gap} ms without a request`);
  });

  test('an endpoint without samples reads as the service median; no samples anywhere compares in-flight counts', () => {
    const sim = new Sim(17);
    const [a, b, c] = [sim.add(() => 1), sim.add(() => 1), sim.add(() => 1)].map((m) => m.endpoint) as [Endpoint, Endpoint, Endpoint];
    const now = sim.clock.now();
    a.observeLatency(2, now);
    b.observeLatency(4, now);
    sim.clock.advance(SLOW_START_MS);
    sim.balancer.pick([a, b, c], undefined);
    assert.equal(sim.balancer.typicalLatencyMs, 3);
    assert.equal(latencyEstimate(c, sim.clock.now(), 3), 3);
    // Idle, a slow estimate drifts back toward the typical latency instead of toward 0.
    const estimate = latencyEstimate(b, now + 5_000, 3);
    assert.ok(Math.abs(estimate - 3) < 0.01, `estimate ${estimate}`);
  });

  test('an endpoint starts from its fastest first answer, so one cold first answer does not linger', () => {
    const sim = new Sim(19);
    const e = sim.add(() => 1).endpoint;
    e.observeLatency(50, sim.clock.now());
    for (let k = 0; k < 49; k++) e.observeLatency(1, sim.clock.now() + k);
    assert.ok(e.ewmaMs < 2.1, `estimate ${e.ewmaMs}`);
  });

  test('a lone slow answer sets no peak; two in a row do, and it fades within a few hundred ms', () => {
    const sim = new Sim(29);
    const e = sim.add(() => 1).endpoint;
    let now = sim.clock.now();
    for (let k = 0; k < 50; k++) e.observeLatency(1, (now += 10));
    e.observeLatency(40, (now += 10));
    assert.ok(latencyEstimate(e, now, 1) < 1.5, `one outlier: estimate ${latencyEstimate(e, now, 1)}`);
    e.observeLatency(1, (now += 10));
    e.observeLatency(40, (now += 10));
    e.observeLatency(40, (now += 10));
    assert.ok(latencyEstimate(e, now, 1) > 30, `two slow answers: estimate ${latencyEstimate(e, now, 1)}`);
    assert.ok(latencyEstimate(e, now + 300, 1) < 2.5, `300 ms later: estimate ${latencyEstimate(e, now + 300, 1)}`);
  });

  test('an endpoint back from failing its health checks slow-starts again', () => {
    const sim = new Sim(23);
    const e = sim.add(() => 1).endpoint;
    assert.equal(e.warmingSince, sim.clock.now());
    sim.clock.advance(5_000);
    for (let k = 0; k < 3; k++) e.health.checkFailed(sim.clock.now());
    assert.equal(e.health.state.kind, 'unhealthy');
    sim.clock.advance(1_000);
    for (let k = 0; k < 2; k++) e.health.checkPassed(sim.clock.now());
    assert.equal(e.health.state.kind, 'probation');
    assert.equal(e.warmingSince, sim.clock.now());
  });
});
