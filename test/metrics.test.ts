// The metrics catalog (src/observe/metrics.ts): every declared metric is exported where it
// belongs (gateway admin /metrics, a tandem/node instance's /metrics), with the declared labels
// only, documented in docs/metrics.md and known to the Grafana dashboard's queries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { METRIC_SPECS, eventCounters, metricsRegistry, type MetricEmitter } from '../src/observe/metrics.js';
import { startGateway, ROOT } from './helpers/gateway.js';
import { answerOk, startBackend } from './helpers/backend.js';
import { spawnInstance } from './helpers/sdk.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const { defer, track } = cleanupAfterAll();


interface Scraped { help: Map<string, string>; types: Map<string, string>; samples: Array<{ name: string; labels: string[] }> }

function parseExposition(text: string): Scraped {
  const help = new Map<string, string>();
  const types = new Map<string, string>();
  const samples: Scraped['samples'] = [];
  for (const line of text.split('\n')) {
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) { help.set(m[1]!, m[2]!); continue; }
    m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) { types.set(m[1]!, m[2]!); continue; }
    m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (m) samples.push({ name: m[1]!, labels: m[2] ? [...m[2].matchAll(/(\w+)="/g)].map((x) => x[1]!) : [] });
  }
  return { help, types, samples };
}

/** Every metric of `emitter` is exported with its help and type; samples carry exactly the declared labels. */
function checkExported(scraped: Scraped, emitters: readonly MetricEmitter[], mustHaveSamples: readonly string[]): void {
  for (const spec of METRIC_SPECS.filter((s) => emitters.includes(s.emitter))) {
    assert.equal(scraped.help.get(spec.name), spec.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n'), `${spec.name}: HELP`);
    assert.equal(scraped.types.get(spec.name), spec.type, `${spec.name}: TYPE`);
    const own = scraped.samples.filter((s) => s.name === spec.name || (spec.type === 'histogram' && [`${spec.name}_bucket`, `${spec.name}_sum`, `${spec.name}_count`].includes(s.name)));
    if (mustHaveSamples.includes(spec.name)) assert.ok(own.length > 0, `${spec.name}: no samples`);
    for (const s of own) {
      const expected = s.name.endsWith('_bucket') ? [...spec.labels, 'le'] : [...spec.labels];
      assert.deepEqual([...s.labels].sort(), expected.sort(), `${s.name}: labels`);
    }
  }
}

test('the gateway exports every gateway metric of the catalog, with the declared labels', async () => {
  const backend = await startBackend('a', answerOk('a'));
  defer(() => backend.close());
  const gw = track(await startGateway({ services: { shop: { endpoints: [backend.address] }, reg: {} }, routes: [{ prefix: '/reg', service: 'reg' }, { prefix: '/', service: 'shop' }] }));
  track(await spawnInstance({ registry: gw.adminUrl, service: 'reg' }));
  for (let i = 0; i < 5; i++) await (await fetch(`${gw.url}/x`)).text();
  await (await fetch(`${gw.url}/reg/y`)).text();
  const scraped = parseExposition(await (await fetch(`${gw.adminUrl}/metrics`)).text());
  checkExported(scraped, ['gateway'], ['tandem_requests_total', 'tandem_request_duration_seconds', 'tandem_requests_in_flight', 'tandem_gateway_requests_in_flight',
    'tandem_endpoint_latency_estimate_seconds', 'tandem_endpoint_response_seconds', 'tandem_endpoint_state', 'tandem_registry_instances', 'tandem_registry_changes_total', 'tandem_gateway_info']);
  assert.ok(scraped.samples.some((s) => s.name === 'process_cpu_seconds_total'), 'default process metrics');
});

test('a tandem/node instance exports the node SDK, client and events metrics at its /metrics', async () => {
  const gw = track(await startGateway({ services: { front: {}, back: {} }, routes: [{ prefix: '/', service: 'front' }] }));
  track(await spawnInstance({ registry: gw.adminUrl, service: 'back' }));
  const front = track(await spawnInstance({ registry: gw.adminUrl, service: 'front', callee: 'back' }, 'caller-instance'));
  assert.equal((await fetch(`${gw.url}/order`)).status, 200);
  const res = await fetch(`http://${front.address}/metrics`);
  assert.equal(res.status, 200);
  const scraped = parseExposition(await res.text());
  checkExported(scraped, ['node', 'client', 'events'], ['tandem_node_requests_total', 'tandem_node_request_duration_seconds', 'tandem_node_requests_in_flight', 'tandem_node_state',
    'tandem_client_requests_total', 'tandem_client_request_duration_seconds', 'tandem_client_requests_in_flight', 'tandem_client_endpoint_state']);

  // Events emit through eventCounters(); this process's registry exports them.
  const pub = eventCounters('orders');
  pub.published += 3;
  const sub = eventCounters('orders', 'billing');
  assert.equal(eventCounters('orders', 'billing'), sub, 'the same counters for the same topic and group');
  sub.delivered += 4;
  sub.acked += 3;
  sub.deadLettered += 1;
  sub.lag = 7;
  const text = await metricsRegistry().metrics();
  checkExported(parseExposition(text), ['events'], METRIC_SPECS.filter((s) => s.emitter === 'events').map((s) => s.name));
  assert.match(text, /tandem_events_published_total\{topic="orders"\} 3/);
  assert.match(text, /tandem_events_dead_lettered_total\{topic="orders",group="billing"\} 1/);
  assert.match(text, /tandem_events_consumer_lag\{topic="orders",group="billing"\} 7/);
});

test('docs/metrics.md documents exactly the catalog; the Grafana dashboard queries only declared metrics', () => {
  const doc = readFileSync(join(ROOT, 'docs/metrics.md'), 'utf8');
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    const name = /^`(tandem_\w+)`$/.exec(cells[0] ?? '')?.[1];
    if (name && cells.length >= 4) rows.set(name, { type: cells[1]!, labels: cells[2] === '—' ? [] : cells[2]!.split(',').map((l) => l.trim().replaceAll('`', '')) });
  }
  assert.deepEqual([...rows.keys()].sort(), METRIC_SPECS.map((s) => s.name).sort());
  for (const spec of METRIC_SPECS) {
    assert.deepEqual(rows.get(spec.name), { type: spec.type, labels: [...spec.labels] }, spec.name);
    // Prometheus conventions
    assert.match(spec.name, /^tandem_[a-z0-9_]+$/);
    assert.equal(spec.type === 'counter', spec.name.endsWith('_total'), `${spec.name}: counters and only counters end in _total`);
    assert.ok(!/_ms$|_milliseconds/.test(spec.name), `${spec.name}: base units`);
  }

  const dashboard = JSON.parse(readFileSync(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
  const declared = new Set(METRIC_SPECS.map((s) => s.name));
  const used = new Set<string>();
  for (const p of dashboard.panels) {
    for (const t of p.targets) {
      for (const [name] of t.expr.matchAll(/tandem_\w+/g)) {
        const base = name.replace(/_(bucket|sum|count)$/, '');
        assert.ok(declared.has(base), `${p.title}: ${name} is not a declared metric`);
        used.add(base);
      }
    }
  }
  assert.deepEqual([...declared].filter((n) => !used.has(n)), [], 'every declared metric is on the Grafana dashboard');
});

test('tandem/events counts into the catalog: a bus publish and a handled message show in the process metrics', async () => {
  const { MemoryBus } = await import('../src/events/index.js');
  const bus = new MemoryBus();
  const topic = `metrics-${process.pid}`;
  let handled = 0;
  await bus.subscribe(topic, 'audit', async () => { handled++; });
  for (let i = 0; i < 3; i++) await bus.publish(topic, { n: i });
  await waitFor('three handled messages', () => handled === 3);
  await bus.stats();
  const text = await metricsRegistry().metrics();
  assert.match(text, new RegExp(`tandem_events_published_total\\{topic="${topic}"\\} 3`));
  assert.match(text, new RegExp(`tandem_events_acked_total\\{topic="${topic}",group="audit"\\} 3`));
  assert.match(text, new RegExp(`tandem_events_consumer_lag\\{topic="${topic}",group="audit"\\} 0`));
  await bus.close();
});
