import { setTimeout as sleep } from 'node:timers/promises';
import { openLoop, percentile, type LoadRequest, type LoadResult } from '../drill/open-loop.js';
import type { DemoCluster } from './demo-command.js';

export interface DemoDrillOptions {
  /** Seconds of load. */
  duration: number;
  /** Requests per second: a third GET /catalog/items/…, a third GET /orders/stats, a third POST /orders. */
  rate: number;
}

const SKUS = ['apple', 'bread', 'cheese'];
const CLIENT_TIMEOUT_MS = 10_000;

/** The load's three kinds of request, in turn. */
function requestOf(i: number): LoadRequest {
  const sku = SKUS[i % SKUS.length]!;
  switch (i % 3) {
    case 0: return { method: 'GET', path: `/catalog/items/${sku}` };
    case 1: return { method: 'GET', path: '/orders/stats' };
    default: return { method: 'POST', path: '/orders', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sku, qty: 1 }) };
  }
}

const KINDS = ['GET /catalog/items/…', 'GET /orders/stats', 'POST /orders'];

/**
 * `tandem demo --drill`: open-loop load through the demo's gateway while, one after the other,
 * (1) every orders instance is replaced in a rolling deploy — SIGTERM one, start its
 * replacement, wait until it is registered and ready, next — and (2) a catalog instance is
 * SIGKILLed and, 2 s later, replaced. Prints what the clients saw and whether any order was
 * processed twice; exit code 0 only when no request failed and none was processed twice.
 */
export async function runDemoDrill(cluster: DemoCluster, options: DemoDrillOptions): Promise<number> {
  const origin = `http://${cluster.gateway.listenAddress}`;
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`  drill: ${options.rate} req/s for ${options.duration} s (GET catalog, GET orders, POST orders in turn)`);
  // Warm-up: connections, JIT, the balancers' latency estimates.
  await openLoop({ origin, rate: options.rate, durationS: 1, idPrefix: 'warm', timeoutMs: CLIENT_TIMEOUT_MS, request: requestOf });

  const state = { outstanding: 0, t0: 0 };
  const events: string[] = [];
  const load = openLoop({ origin, rate: options.rate, durationS: options.duration, idPrefix: 'drill', timeoutMs: CLIENT_TIMEOUT_MS, request: requestOf, state });
  const at = () => `${((performance.now() - state.t0) / 1000).toFixed(1)} s`;
  const note = (what: string) => {
    events.push(`${at().padStart(7)}  ${what}`);
    out(`  ${at().padStart(7)}  ${what}`);
  };
  const exits: string[] = [];
  const faults = (async () => {
    await sleep(options.duration * 100);
    for (const old of cluster.running('orders')) {
      note(`rolling deploy: SIGTERM ${old.name}`);
      old.child.kill('SIGTERM');
      const replacement = await cluster.start('orders');
      note(`rolling deploy: ${replacement.name} registered and ready`);
      const code = await old.exited;
      note(`rolling deploy: ${old.name} drained and exited ${code}`);
      if (code !== 0) exits.push(`${old.name} exited ${code}`);
    }
    const wait = options.duration * 600 - (performance.now() - state.t0);
    if (wait > 0) await sleep(wait);
    const victim = cluster.running('catalog')[0]!;
    note(`SIGKILL ${victim.name}`);
    victim.child.kill('SIGKILL');
    await victim.exited;
    await sleep(2000);
    const replacement = await cluster.start('catalog');
    note(`${replacement.name} registered and ready (replaces ${victim.name})`);
  })();
  const run = await load;
  await faults;
  return report(run.results, cluster.processedOrders, events, exits, run.maxSendLagMs, out);
}

function report(results: LoadResult[], processed: readonly string[], events: string[], exits: string[], lagMs: number, out: (line: string) => void): number {
  const ok = (r: LoadResult) => r.err === null && r.status >= 200 && r.status < 300;
  const ms = (n: number | null) => (n === null ? '—' : n >= 100 ? String(Math.round(n)) : n.toFixed(1));
  out('');
  out('  | requests | sent | failed | p50 (ms) | p99 (ms) | max (ms) |');
  out('  |---|---:|---:|---:|---:|---:|');
  let failed = 0;
  KINDS.forEach((kind, k) => {
    const mine = results.filter((_, i) => i % 3 === k);
    const lats = mine.map((r) => r.lat).sort((a, b) => a - b);
    const bad = mine.filter((r) => !ok(r));
    failed += bad.length;
    out(`  | ${kind} | ${mine.length} | ${bad.length} | ${ms(percentile(lats, 50))} | ${ms(percentile(lats, 99))} | ${ms(lats.at(-1) ?? null)} |`);
  });
  const counts = new Map<string, number>();
  for (const id of processed) if (id.startsWith('drill-')) counts.set(id, (counts.get(id) ?? 0) + 1);
  const duplicates = [...counts.values()].filter((n) => n > 1).length;
  const answered = results.filter((r) => r.method === 'POST' && ok(r));
  const lost = answered.filter((r) => !counts.has(r.id)).length;
  const failures = results.filter((r) => !ok(r)).slice(0, 5).map((r) => `${r.method} ${r.id} at ${r.t} ms: ${r.err ?? r.status}`);
  out('');
  out(`  POSTs: ${answered.length} answered 2xx, ${counts.size} processed, ${duplicates} processed twice, ${lost} answered but not processed`);
  if (failures.length > 0) out(`  first failures: ${failures.join('; ')}`);
  if (exits.length > 0) out(`  unclean exits: ${exits.join('; ')}`);
  out(`  load generator lag: max ${lagMs.toFixed(1)} ms`);
  const pass = failed === 0 && duplicates === 0 && lost === 0 && exits.length === 0;
  out(`  ${pass ? 'PASS' : 'FAIL'}: ${failed} failed requests, ${duplicates} duplicates, ${events.length} events`);
  out('');
  return pass ? 0 : 1;
}
