import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { FakeClock } from '../src/core/clock.js';
import { Watchdog, type ProbeResult, type Verdict } from '../src/gateway/watchdog.js';
import { startGateway, tempDir, BIN, type RunningGateway } from './helpers/gateway.js';
import { followJsonLines } from './helpers/json-lines.js';

/**
 * `tandem watchdog` (issue 13): keepalived runs its scripts at most once a second, so a frozen
 * gateway kept the address for 1–1.5 s; the watchdog asks /readyz every 100 ms and writes the
 * track file keepalived reads by inotify.
 */

/** A watchdog on a fake clock whose probes the test answers one by one. */
function harness(o: { intervalMs?: number; deadAfterMs?: number; rise?: number } = {}) {
  const fake = new FakeClock(1000);
  // `lag` stands for the watchdog's own process being starved: its timers fire late.
  const skew = { lag: 0 };
  const clock = { now: () => fake.now() + skew.lag, setTimeout: fake.setTimeout.bind(fake), clearTimeout: fake.clearTimeout.bind(fake), advance: (ms: number) => fake.advance(ms) };
  const pending: Array<(r: ProbeResult) => void> = [];
  const writes: Array<{ verdict: Verdict; reason: string; at: number }> = [];
  let aborted = 0;
  const dog = new Watchdog({
    clock, intervalMs: o.intervalMs ?? 100, deadAfterMs: o.deadAfterMs ?? 500, rise: o.rise ?? 3,
    probe: (signal) => new Promise((resolve) => {
      signal.addEventListener('abort', () => { aborted++; resolve('error'); });
      pending.push(resolve);
    }),
    write: (verdict, reason) => writes.push({ verdict, reason, at: clock.now() }),
  });
  /** Answers the oldest outstanding probe and lets its promise chain run. */
  const answer = async (r: ProbeResult) => {
    const next = pending.shift();
    assert.ok(next, 'a probe is outstanding');
    next(r);
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { clock, skew, dog, writes, pending, answer, aborted: () => aborted };
}

test('watchdog: the first answer decides (a restarted watchdog beside a serving gateway writes 0, not 1)', async () => {
  const h = harness();
  h.dog.start();
  assert.equal(h.pending.length, 1, 'a probe at once');
  await h.answer('ready');
  assert.deepEqual(h.writes.map((w) => w.verdict), [0]);
  h.dog.stop();
});

test('watchdog: one probe at a time; no answer for dead-after → 1, the stuck probe aborted, and nothing before', async () => {
  const h = harness();
  h.dog.start();
  await h.answer('ready');
  h.clock.advance(100);
  await h.answer('ready');
  // Frozen from here: the probe sent at 1200 is never answered.
  for (let t = 0; t < 400; t += 100) {
    h.clock.advance(100);
    assert.equal(h.pending.length, 1, 'no second probe while one is outstanding');
  }
  assert.deepEqual(h.writes.map((w) => w.verdict), [0], 'not yet: the last answer is 400 ms old');
  h.clock.advance(100); // 1600: the last answer (at 1100) is 500 ms old
  assert.deepEqual(h.writes.map((w) => w.verdict), [0, 1]);
  assert.match(h.writes[1]!.reason, /no answer for 500 ms/);
  assert.equal(h.writes[1]!.at, 1600);
  assert.equal(h.aborted(), 0, 'the probe is aborted when it is dead-after old (sent at 1200)');
  h.clock.advance(100);
  assert.equal(h.aborted(), 1);
  h.dog.stop();
});

test('watchdog: refused or 503 → 1 at once; back to 0 only after `rise` answers in a row', async () => {
  const h = harness({ rise: 3 });
  h.dog.start();
  await h.answer('ready');
  h.clock.advance(100);
  await h.answer('refused');
  assert.deepEqual(h.writes.map((w) => [w.verdict, w.reason]), [[0, 'ready'], [1, 'connection refused']]);
  h.clock.advance(100);
  await h.answer('ready');
  h.clock.advance(100);
  await h.answer('ready');
  h.clock.advance(100);
  await h.answer('not-ready');
  assert.equal(h.writes.length, 2, 'two answers are not three: still 1');
  for (let i = 0; i < 3; i++) {
    h.clock.advance(100);
    await h.answer('ready');
  }
  assert.deepEqual(h.writes.map((w) => w.verdict), [0, 1, 0]);
  h.dog.stop();
});

test('watchdog: a reset or a failed probe alone decides nothing (only the deadline does)', async () => {
  const h = harness();
  h.dog.start();
  await h.answer('ready');
  for (let i = 0; i < 4; i++) {
    h.clock.advance(100);
    await h.answer('error');
  }
  assert.deepEqual(h.writes.map((w) => w.verdict), [0]);
  h.clock.advance(100);
  assert.deepEqual(h.writes.map((w) => w.verdict), [0, 1], 'no answer for 500 ms');
  h.dog.stop();
});

test('watchdog: a late tick of its own (the watchdog starved) judges nothing; the next one does', async () => {
  const h = harness();
  h.dog.start();
  await h.answer('ready');
  // The timer due at 1100 fires 600 ms late, at 1700: the last answer looks 700 ms old, but the
  // gateway's next answer may be queued behind this tick. It judges nothing.
  h.skew.lag = 600;
  h.clock.advance(100);
  assert.deepEqual(h.writes.map((w) => w.verdict), [0]);
  await h.answer('ready');
  h.clock.advance(100);
  assert.deepEqual(h.writes.map((w) => w.verdict), [0], 'answered after the late tick: still 0');
  // Without answers, the next tick on time does judge.
  for (let i = 0; i < 5; i++) h.clock.advance(100);
  assert.deepEqual(h.writes.map((w) => w.verdict), [0, 1]);
  h.dog.stop();
});

test('watchdog: bad settings are refused', () => {
  const clock = new FakeClock();
  const base = { clock, probe: async (): Promise<ProbeResult> => 'ready', write: () => {}, rise: 1 };
  assert.throws(() => new Watchdog({ ...base, intervalMs: 100, deadAfterMs: 100 }), /interval < dead-after/);
  assert.throws(() => new Watchdog({ ...base, intervalMs: 100, deadAfterMs: 500, rise: 0 }), /rise/);
});

const procs: ChildProcess[] = [];
const gateways: RunningGateway[] = [];
const dirs: string[] = [];
after(() => {
  for (const p of [...procs, ...gateways.map((g) => g.proc)]) if (p.exitCode === null && p.signalCode === null) { p.kill('SIGCONT'); p.kill('SIGKILL'); }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('tandem watchdog beside a real gateway: 0 when ready, 1 when frozen (SIGSTOP), 0 after SIGCONT, 1 when killed', async () => {
  const gw = await startGateway({ services: { shop: { endpoints: ['127.0.0.1:9'] } }, routes: [{ prefix: '/', service: 'shop' }] });
  gateways.push(gw);
  const dir = tempDir('tandem-watchdog-');
  dirs.push(dir);
  const file = join(dir, 'watchdog');
  const proc = spawn(process.execPath, [BIN, 'watchdog', '--admin', gw.adminUrl.slice('http://'.length), '--track-file', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const { waitFor, lines } = followJsonLines(proc, exited, 'watchdog');
  const after = (line: Record<string, unknown>) => (l: Record<string, unknown>) => lines.indexOf(l) > lines.indexOf(line);
  const content = () => { try { return readFileSync(file, 'utf8'); } catch { return ''; } };

  await waitFor((l) => l.event === 'watchdog' && l.verdict === 0);
  assert.equal(content(), '0\n');
  gw.proc.kill('SIGSTOP');
  const frozen = await waitFor((l) => l.event === 'watchdog' && l.verdict === 1);
  assert.match(String(frozen.reason), /no answer for \d+ ms/);
  assert.equal(content(), '1\n');
  gw.proc.kill('SIGCONT');
  const back = await waitFor((l) => after(frozen)(l) && l.event === 'watchdog' && l.verdict === 0);
  assert.equal(content(), '0\n');
  gw.proc.kill('SIGKILL');
  await gw.exited;
  const gone = await waitFor((l) => after(back)(l) && l.event === 'watchdog' && l.verdict === 1);
  // Refused, normally; on a starved machine the deadline may speak first.
  assert.match(String(gone.reason), /connection refused|no answer/);
  assert.ok(gone);
  assert.equal(content(), '1\n');
  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
});
