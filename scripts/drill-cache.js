#!/usr/bin/env node
// Cache drill (tandem issue 16): GETs over 100 keys through a proxy with a response cache while
// every instance of the origin fails at once, then recovers (scenarios: scripts/lib/cache-drill.js).
// The origin says `max-age=1, stale-if-error=60`; keys are requested in turn, so every key is
// cached before the outage. Two faults, each on a fresh pair of origin instances: every instance
// answers 503 for the outage, and every instance is SIGKILLed for the outage (restarted on the
// same ports after).
//
// Usage: npm run drill:cache [-- [--quick] [--outage SECONDS] [--rate N] [--only tandem,tandem-redis,nginx] [--keep-tmp]]
//   --quick        150 GET/s, 3 s outages (default 300 GET/s, 6 s)
//   env TANDEM_BIN another bin/tandem.js to measure (e.g. main's, for a before/after)
//   env DRILL_CACHE_FAULTS=503 or kill: one fault only (default both)
//   Needs `npm run build` first (the gateway and the load generator run from dist/).
//
// Targets, one after the other (never side by side: each gets the machine to itself): a tandem
// gateway whose route has `cache: true`; two tandem gateways sharing a private redis-server
// (`cache.redis`), the load split between them; nginx with proxy_cache, proxy_cache_use_stale
// error timeout updating http_500 http_502 http_503 http_504, proxy_cache_lock on and
// proxy_cache_background_update on. Reported per target and fault: GETs, failed (target 0),
// origin requests per client request and per key per expiry (target 1, across both gateways
// too), and how long after recovery the last old answer came (target under 1 s); origin
// requests by phase and kind. Results: the tables on stdout and bench/results/drill-cache-latest.json.
import { existsSync, mkdirSync, mkdtempSync, chmodSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createProcs } from './lib/procs.js';
import { CACHE_FAULTS, CACHE_KEYS, CACHE_TARGETS, cacheRowFails, cacheTargetMissing, createCacheDrill, printCacheTables } from './lib/cache-drill.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const TAG = 'drill:cache';
const WARM_S = 2;
const AFTER_S = 3;

function die(msg) {
  console.error(`${TAG}: ${msg}`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { rate: 300, outage: 6, only: CACHE_TARGETS, keepTmp: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') Object.assign(opts, { rate: 150, outage: 3 });
    else if (a === '--keep-tmp') opts.keepTmp = true;
    else if (a === '--outage') opts.outage = Number(argv[++i]);
    else if (a === '--rate') opts.rate = Number(argv[++i]);
    else if (a === '--only') opts.only = String(argv[++i]).split(',');
    else die(`unknown argument ${a} (known: --quick, --outage SECONDS, --rate N, --only ${CACHE_TARGETS.join(',')}, --keep-tmp)`);
  }
  if (!(opts.outage > 0) || !(opts.rate > 0)) die('--outage and --rate need positive numbers');
  for (const t of opts.only) if (!CACHE_TARGETS.includes(t)) die(`unknown target ${t}`);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const procs = createProcs({ tag: TAG, root });
const tmp = mkdtempSync(join(os.tmpdir(), 'tandem-drill-cache-'));
chmodSync(tmp, 0o755); // nginx workers (user nobody) write their cache and temp files here
const cleanup = () => { if (!opts.keepTmp) rmSync(tmp, { recursive: true, force: true }); };
procs.installHandlers(cleanup);

async function main() {
  if (!existsSync(join(root, 'dist', 'src', 'drill', 'open-loop.js'))) die('run `npm run build` first (the load generator is dist/src/drill/open-loop.js)');
  const targets = opts.only.filter((t) => {
    const missing = cacheTargetMissing(t);
    if (missing !== undefined) console.log(`${TAG}: skipping ${t} (${missing} is not installed)`);
    return missing === undefined;
  });
  console.log(`${TAG}: ${opts.rate} GET/s over ${CACHE_KEYS} keys; ${WARM_S} s warm, ${opts.outage} s outage, ${AFTER_S} s after; origin max-age=1, stale-if-error=60`);
  const drill = createCacheDrill({ procs, tmp, root, rate: opts.rate, outageS: opts.outage, warmS: WARM_S, afterS: AFTER_S, fail: die });
  const rows = [];
  for (const fault of process.env.DRILL_CACHE_FAULTS?.split(',') ?? CACHE_FAULTS) {
    for (const target of targets) rows.push(await drill.run(target, fault));
  }
  printCacheTables(rows);
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(join(root, 'bench', 'results', 'drill-cache-latest.json'), `${JSON.stringify({ at: new Date().toISOString(), rate: opts.rate, outageS: opts.outage, keys: CACHE_KEYS, rows }, null, 2)}\n`);
  cleanup();
  process.exit(rows.some(cacheRowFails) ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  procs.fatal(1, 'failed', cleanup);
});
