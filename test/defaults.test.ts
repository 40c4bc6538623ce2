// The config's defaults are the engine's: a gateway built from a config that leaves a setting
// out, and an Upstream, EmbeddedRegistry, serve() or createClient() built in code without it,
// behave alike. Each value is written once (core/defaults/*.ts, node/defaults.ts,
// client/defaults.ts); these assertions catch a part that grows a literal of its own again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS } from '../src/config/defaults.js';
import { validateConfig } from '../src/config/validate.js';
import { DEFAULT_HEALTH } from '../src/upstream/health/state.js';
import { DEFAULT_OUTLIER } from '../src/upstream/health/outlier.js';
import { DEFAULT_PANIC } from '../src/upstream/health/panic.js';
import { DEFAULT_HEDGE } from '../src/upstream/resilience/hedge.js';
import { DEFAULT_RETRY_BUDGET } from '../src/upstream/resilience/budget.js';
import { EMBEDDED_DEFAULTS } from '../src/discovery/embedded.js';
import { DISCOVERY_DEFAULTS } from '../src/core/defaults/discovery.js';
import { NODE_DEFAULTS } from '../src/node/defaults.js';
import { CLIENT_DEFAULTS } from '../src/client/defaults.js';

const s = DEFAULTS.service;

test('health: the engine counts checks as the config does (rise 2, fall 2)', () => {
  assert.deepEqual({ ...DEFAULT_HEALTH }, { healthyThreshold: s.healthCheck.healthyThreshold, unhealthyThreshold: s.healthCheck.unhealthyThreshold });
});

test('outlier detection and the panic threshold', () => {
  assert.equal(DEFAULT_OUTLIER.consecutiveFailures, s.outlier.consecutiveFailures);
  assert.equal(DEFAULT_OUTLIER.baseEjectionMs, s.outlier.baseEjectionTime);
  assert.equal(DEFAULT_OUTLIER.maxEjectionMs, s.outlier.maxEjectionTime);
  assert.equal(DEFAULT_OUTLIER.maxEjectedShare, s.outlier.maxEjectedShare);
  assert.equal(DEFAULT_PANIC.panicThreshold, s.panicThreshold);
});

test('retry budget and hedging (the config writes percentages, the engine shares)', () => {
  assert.equal(DEFAULT_RETRY_BUDGET.percent, s.retry.budget.percent / 100);
  assert.equal(DEFAULT_RETRY_BUDGET.minPerSecond, s.retry.budget.minPerSecond);
  assert.equal(DEFAULT_HEDGE.percentile, s.hedge.percentile / 100);
  assert.equal(DEFAULT_HEDGE.minDelayMs, s.hedge.minDelay);
  assert.deepEqual([...DEFAULT_HEDGE.methods], [...s.hedge.methods]);
});

test('the lease TTL is one value: the registry, its config, the SDK and the client hold', () => {
  assert.equal(DISCOVERY_DEFAULTS.ttl, 10_000);
  assert.equal(EMBEDDED_DEFAULTS.ttl, DISCOVERY_DEFAULTS.ttl);
  assert.equal(DEFAULTS.registry.ttl, DISCOVERY_DEFAULTS.ttl);
  assert.equal(NODE_DEFAULTS.ttl, DISCOVERY_DEFAULTS.ttl);
  assert.equal(CLIENT_DEFAULTS.holdRemoved, DISCOVERY_DEFAULTS.ttl);
});

test('the embedded registry limits are the config\'s registry defaults', () => {
  const { ttl, maxMetadataSize, maxInstances, maxInstancesPerPeer } = EMBEDDED_DEFAULTS;
  const r = DEFAULTS.registry;
  assert.deepEqual({ ttl, maxMetadataSize, maxInstances, maxInstancesPerPeer }, { ttl: r.ttl, maxMetadataSize: r.maxMetadataSize, maxInstances: r.maxInstances, maxInstancesPerPeer: r.maxInstancesPerPeer });
  // The config's ttl range is the registry's own.
  const bad = (ttl: string) => {
    try {
      validateConfig({ listen: '127.0.0.1:0', services: { a: { endpoints: ['127.0.0.1:1'] } }, routes: [{ prefix: '/', service: 'a' }], registry: { ttl } });
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  };
  assert.equal(bad('1s'), undefined);
  assert.equal(bad('5m'), undefined);
  assert.match(bad('999ms') ?? '', /from 1s to 5m/);
  assert.match(bad('301s') ?? '', /from 1s to 5m/);
});
