#!/usr/bin/env node
// Cascade drill (issue 12, part 3): A → B, every instance of B killed under load.
//
// Usage: npm run drill:cascade [-- [--rate 200] [--duration 12] [--no-build] [--keep-tmp] [--json file]]
//
// A real gateway (bin/tandem.js, a config naming only the services) routes every request to
// `greeter` (2 express instances, tandem/node), whose handler calls `pricing` (2 instances)
// through tandem/client; a failed call goes to express's error handler. Open-loop load of
// --rate GET/s for --duration s. At 25 % of the run both pricing instances are SIGKILLed; at
// 55 % two new ones start (B's return = the moment both have registered).
// Verdict (PASS only when all hold):
//   - from the kill on, no greeter instance is ejected or leaves "healthy" at the gateway (sampled
//     every 100 ms; anything before the kill is the machine's, reported apart),
//     and the gateway retries none of greeter's answers (they name the failed dependency);
//   - while pricing is down the answers are fast errors (their p99 is reported);
//   - every request scheduled 1 s or more after B's return succeeds, and none answered before the kill failed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetch } from 'undici';
import { createProcs, freePorts, sleep, waitUntilAnswering } from './lib/procs.js';

const TAG = 'drill:cascade';
const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const RATE = Number(opt('rate', 200));
const DURATION = Number(opt('duration', 12));
const RECOVERY_TARGET_MS = 1000;

const procs = createProcs({ tag: TAG, root });
const tmp = mkdtempSync(join(os.tmpdir(), 'tandem-drill-cascade-'));
procs.installHandlers(() => rmSync(tmp, { recursive: true, force: true }));

function startInstance(name, script, adminUrl) {
  const proc = procs.start(name, process.execPath, [join(root, 'bench', script), adminUrl], { dir: tmp });
  proc.serving = (async () => {
    for (;;) {
      if (!procs.alive(proc)) throw new Error(`${name} exited before serving: ${readFileSync(proc.errFile, 'utf8').slice(-2000)}`);
      const out = readFileSync(proc.outFile, 'utf8');
      if (out.includes('"serving"')) return performance.now();
      await sleep(10);
    }
  })();
  return proc;
}

async function main() {
  if (!args.includes('--no-build')) {
    const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
    if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`);
  }
  const { openLoop, percentile } = await import('../dist/src/drill/open-loop.js');
  const { tokenFor } = await import('../dist/src/core/secret.js');
  const [listen, admin] = await freePorts(2);
  const adminUrl = `http://127.0.0.1:${admin}`;
  mkdirSync(join(tmp, 'gw'), { recursive: true });
  const configFile = join(tmp, 'gw', 'tandem.yaml');
  writeFileSync(configFile, `listen: 127.0.0.1:${listen}\nadmin: 127.0.0.1:${admin}\nservices:\n  greeter: {}\n  pricing: {}\nroutes:\n  - prefix: /\n    service: greeter\n`);
  procs.start('gateway', process.execPath, [join(root, 'bin', 'tandem.js'), 'gateway', '--config', configFile], { dir: tmp });
  await waitUntilAnswering([[admin, '/readyz']], 20_000);
  const token = tokenFor(new URL(adminUrl));
  const adminGet = async (path) => (await fetch(`${adminUrl}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} }));
  const metric = async (pattern) => {
    const text = await (await adminGet('/metrics')).text();
    let sum = 0;
    for (const line of text.split('\n')) if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    return sum;
  };

  let pricing = [startInstance('pricing-1', 'cascade-pricing.js', adminUrl), startInstance('pricing-2', 'cascade-pricing.js', adminUrl)];
  const greeters = [startInstance('greeter-1', 'cascade-greeter.js', adminUrl), startInstance('greeter-2', 'cascade-greeter.js', adminUrl)];
  await Promise.all([...pricing, ...greeters].map((p) => p.serving));
  const origin = `http://127.0.0.1:${listen}`;
  const greeterStates = async () => ((await (await adminGet('/admin/cluster')).json()).services.find((s) => s.name === 'greeter')?.endpoints ?? []).map((e) => e.state);
  for (let i = 0; i < 100; i++) {
    const states = await greeterStates();
    if (states.length === 2 && states.every((s) => s === 'healthy')) break;
    await sleep(50);
  }
  console.log(`${TAG}: gateway ${origin}, greeter ×2 → pricing ×2; ${RATE} req/s for ${DURATION} s`);
  await openLoop({ origin, rate: RATE, durationS: 1, idPrefix: 'warm', timeoutMs: 5000, request: () => ({ method: 'GET', path: '/' }) });

  const ejectionsBefore = await metric(/^tandem_outlier_ejections_total\{service="greeter"/);
  const retriesBefore = await metric(/^tandem_retries_total\{service="greeter"/);
  const state = { outstanding: 0, t0: 0 };
  const load = openLoop({
    origin, rate: RATE, durationS: DURATION, idPrefix: 'cascade', timeoutMs: 5000, state,
    request: () => ({ method: 'GET', path: '/' }),
  });
  const since = () => performance.now() - state.t0;
  let sampling = true;
  const unhealthySamples = [];
  let samples = 0;
  const sampler = (async () => {
    while (sampling) {
      const states = await greeterStates().catch(() => []);
      samples++;
      if (states.length !== 2 || states.some((s) => s !== 'healthy')) unhealthySamples.push(`${(since() / 1000).toFixed(1)} s: ${states.join(', ') || 'none'}`);
      await sleep(100);
    }
  })();
  await sleep(DURATION * 250);
  // Ejections before the fault are the machine's (a loaded CPU makes hedges win), not the
  // cascade's: reported apart, and the verdict counts from the kill on.
  const ejectionsAtKill = await metric(/^tandem_outlier_ejections_total\{service="greeter"/);
  const unhealthyBeforeKill = unhealthySamples.splice(0).length;
  const samplesBeforeKill = samples;
  const killedAt = since();
  for (const p of pricing) procs.signalProc(p, 'SIGKILL');
  await Promise.all(pricing.map((p) => p.exited));
  console.log(`${TAG}: ${(killedAt / 1000).toFixed(1)} s  SIGKILL both pricing instances`);
  await sleep(Math.max(0, DURATION * 550 - since()));
  const restartAt = since();
  pricing = [startInstance('pricing-3', 'cascade-pricing.js', adminUrl), startInstance('pricing-4', 'cascade-pricing.js', adminUrl)];
  const servedAt = Math.max(...await Promise.all(pricing.map((p) => p.serving))) - state.t0;
  console.log(`${TAG}: ${(restartAt / 1000).toFixed(1)} s  two new pricing instances start; both registered at ${(servedAt / 1000).toFixed(2)} s`);
  const run = await load;
  sampling = false;
  await sampler;
  const ejectionsEnd = await metric(/^tandem_outlier_ejections_total\{service="greeter"/);
  const ejections = ejectionsEnd - ejectionsAtKill;
  const ejectionsBeforeKill = ejectionsAtKill - ejectionsBefore;
  samples -= samplesBeforeKill;
  const retries = await metric(/^tandem_retries_total\{service="greeter"/) - retriesBefore;

  const ok = (r) => r.err === null && r.status === 200;
  const results = run.results.filter((r) => r.t !== null);
  // Before = answered before the kill: a call in flight to pricing when it died may fail.
  const before = results.filter((r) => r.t + r.lat < killedAt);
  const during = results.filter((r) => r.t + r.lat >= killedAt && r.t < servedAt);
  const after = results.filter((r) => r.t >= servedAt);
  const lastFailure = after.filter((r) => !ok(r)).reduce((m, r) => Math.max(m, r.t), -Infinity);
  const firstOk = after.find(ok)?.t;
  const recoveryMs = lastFailure === -Infinity ? 0 : lastFailure - servedAt;
  const failedDuring = during.filter((r) => !ok(r));
  const errLat = failedDuring.map((r) => r.lat).sort((a, b) => a - b);
  const statuses = {};
  for (const r of failedDuring) statuses[r.err ?? r.status] = (statuses[r.err ?? r.status] ?? 0) + 1;
  const lateFailures = after.filter((r) => !ok(r) && r.t >= servedAt + RECOVERY_TARGET_MS).length;
  const checks = [
    ['no greeter instance ejected from the kill on (outlier ejections)', ejections === 0, String(ejections)],
    ['greeter instances healthy in every sample from the kill on', unhealthySamples.length === 0, `${samples - unhealthySamples.length}/${samples}${unhealthySamples.length ? ` (${unhealthySamples.slice(0, 3).join('; ')})` : ''}`],
    ["greeter's answers not retried on a sibling", retries === 0, String(retries)],
    ['no failure answered before the kill', before.every(ok), `${before.filter((r) => !ok(r)).length} of ${before.length}`],
    [`every request from ${RECOVERY_TARGET_MS} ms after pricing's return succeeds`, lateFailures === 0, `${lateFailures} failed; last failure ${lastFailure === -Infinity ? 'none' : `${Math.round(recoveryMs)} ms`} after the return, first success ${firstOk === undefined ? 'none' : `${Math.round(firstOk - servedAt)} ms`} after`],
  ];
  console.log('');
  console.log(`| phase | requests | failed | p99 of the failures (ms) |`);
  console.log(`|---|---:|---:|---:|`);
  console.log(`| answered before the kill | ${before.length} | ${before.filter((r) => !ok(r)).length} | — |`);
  console.log(`| pricing down (${((servedAt - killedAt) / 1000).toFixed(1)} s) | ${during.length} | ${failedDuring.length} (${Object.entries(statuses).map(([k, v]) => `${k}: ${v}`).join(', ')}) | ${errLat.length ? percentile(errLat, 0.99).toFixed(1) : '—'} |`);
  console.log(`| after pricing's return | ${after.length} | ${after.filter((r) => !ok(r)).length} | — |`);
  console.log('');
  for (const [what, pass, detail] of checks) console.log(`${pass ? 'PASS' : 'FAIL'}  ${what}: ${detail}`);
  if (ejectionsBeforeKill > 0 || unhealthyBeforeKill > 0) console.log(`note: before the kill (no fault yet) ${ejectionsBeforeKill} ejection(s) and ${unhealthyBeforeKill} of ${samplesBeforeKill} samples not healthy — the machine is loaded`);
  const summary = { rate: RATE, durationS: DURATION, killedAtMs: killedAt, returnedAtMs: servedAt, ejections, ejectionsBeforeKill, unhealthyBeforeKill, retries, unhealthySamples, samples, before: before.length, during: during.length, failedDuring: failedDuring.length, failedStatuses: statuses, errorP99Ms: errLat.length ? percentile(errLat, 0.99) : null, after: after.length, failedAfter: after.filter((r) => !ok(r)).length, recoveryMs, firstOkAfterReturnMs: firstOk === undefined ? null : firstOk - servedAt, pass: checks.every((c) => c[1]) };
  const jsonFile = opt('json', join(root, 'bench', 'results', 'drill-cascade-latest.json'));
  mkdirSync(join(jsonFile, '..'), { recursive: true });
  writeFileSync(jsonFile, `${JSON.stringify(summary, null, 2)}\n`);
  return summary.pass ? 0 : 1;
}

main().then(
  async (code) => {
    for (const p of [...procs.children]) await procs.stop(p, { graceMs: 2000 });
    if (args.includes('--keep-tmp')) console.log(`${TAG}: logs kept in ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
    process.exit(code);
  },
  (err) => procs.fatal(1, err?.stack ?? String(err), () => rmSync(tmp, { recursive: true, force: true })),
);
