// The config's input type is derived from its schema (src/config/schema.ts). This file is
// compiled by the build, so the type-level checks below fail the build, not a test run: a key
// the schema does not know is a compile error (each `@ts-expect-error` must find one), and the
// normalized types must keep one field per key a user can write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CONFIG_SCHEMA, DEFAULTS, defineConfig, validateConfig,
  type GatewayConfig, type GatewayConfigInput, type HealthCheckConfig, type HedgeConfig, type LimitsConfig, type OutlierConfig,
  type RegistryConfig, type RetryConfig, type RouteConfig, type ServiceConfig, type ServiceConfigInput, type UpstreamTlsConfig,
} from '../src/config/index.js';

/** true when A and B have the same keys; else a type naming the keys only one side has (the compile error shows them). */
type SameKeys<A, B> = [Exclude<keyof A, keyof B>, Exclude<keyof B, keyof A>] extends [never, never]
  ? true
  : { onlyInInput: Exclude<keyof A, keyof B>; onlyInOutput: Exclude<keyof B, keyof A> };
/** The object branch of a setting that may also be a string or false. */
type Settings<T> = Extract<NonNullable<T>, object>;

type Input = GatewayConfigInput;
type Service = ServiceConfigInput;
// Each line fails to compile when the schema and the normalized type drift apart.
const keyChecks: Array<true> = [
  true satisfies SameKeys<Input, GatewayConfig>,
  true satisfies SameKeys<Settings<Input['limits']>, LimitsConfig>,
  true satisfies SameKeys<Settings<Input['log']>, GatewayConfig['log']>,
  true satisfies SameKeys<Settings<Input['registry']>, RegistryConfig>,
  true satisfies SameKeys<Input['routes'][number], RouteConfig>,
  // `name` is the key the service is listed under.
  true satisfies SameKeys<Service & { name: string }, ServiceConfig>,
  true satisfies SameKeys<Settings<Service['healthCheck']>, HealthCheckConfig>,
  true satisfies SameKeys<Settings<Service['outlier']>, OutlierConfig>,
  true satisfies SameKeys<Settings<Service['retry']>, RetryConfig>,
  true satisfies SameKeys<Settings<Settings<Service['retry']>['budget']>, RetryConfig['budget']>,
  true satisfies SameKeys<Settings<Service['hedge']>, HedgeConfig>,
  // An endpoint's address is parsed into host, port and whether it is https://.
  true satisfies SameKeys<Omit<Settings<NonNullable<Service['endpoints']>[number]>, 'address'> & { host: string; port: number; tls?: boolean }, ServiceConfig['endpoints'][number]>,
  true satisfies SameKeys<Settings<Service['tls']>, UpstreamTlsConfig>,
  // The defaults cover the optional settings (and only known ones).
  true satisfies SameKeys<Settings<Input['limits']>, typeof DEFAULTS.limits>,
  true satisfies SameKeys<Settings<Input['registry']>, typeof DEFAULTS.registry>,
  true satisfies SameKeys<Settings<Service['healthCheck']>, typeof DEFAULTS.service.healthCheck>,
  true satisfies SameKeys<Settings<Service['outlier']>, typeof DEFAULTS.service.outlier>,
  true satisfies SameKeys<Settings<Service['retry']>, typeof DEFAULTS.service.retry>,
  true satisfies SameKeys<Settings<Service['hedge']>, typeof DEFAULTS.service.hedge>,
  true satisfies SameKeys<Settings<Service['tls']>, typeof DEFAULTS.service.tls>,
];

/** Every key and every kind of value a user can write, once. */
const full = defineConfig({
  listen: '127.0.0.1:8080',
  admin: '127.0.0.1:9901',
  trustedProxies: ['10.0.0.0/8'],
  drainTimeout: '30s',
  limits: { maxHeaderSize: '16KiB', maxHeaders: 100, maxBodySize: 1024, headersTimeout: 5000, requestTimeout: '5m', bodyTimeout: false, minBodyRate: '1KiB', minBodyRateGrace: '5s', keepAliveTimeout: '1m' },
  log: { level: 'warn', access: 'all' },
  services: {
    shop: {
      endpoints: ['127.0.0.1:7001', { address: '127.0.0.1:7002', weight: 2 }],
      balancer: 'consistent-hash',
      hash: { header: 'x-user' },
      connectTimeout: '1s', timeout: 15_000, maxConnections: 10, concurrencyLimit: 100, keepAliveTimeout: '4s', maxResponseHeaderSize: '64KiB',
      healthCheck: { path: '/healthz', interval: '500ms', timeout: 500, healthyThreshold: 2, unhealthyThreshold: 2 },
      outlier: { consecutiveFailures: 5, baseEjectionTime: '30s', maxEjectionTime: '5m', maxEjectedShare: 0.5 },
      panicThreshold: 0.5,
      retry: { attempts: 3, perTryTimeout: '2s', bodyLimit: '64KiB', budget: { percent: 20, minPerSecond: 10 } },
      hedge: { percentile: 95, minDelay: '10ms', methods: ['GET'] },
    },
    off: { endpoints: ['127.0.0.1:7003'], hash: 'client-ip', balancer: 'consistent-hash', healthCheck: false, retry: false, hedge: false },
    // ca, cert and key name files: the upstream TLS tests write real ones (test/upstream-tls.test.ts).
    secure: { endpoints: ['https://127.0.0.1:7004'], tls: { servername: 'shop.internal', insecureSkipVerify: true }, http2: true },
  },
  routes: [{ prefix: '/', service: 'shop', host: 'example.com', stripPrefix: false }, { prefix: '/off', service: 'off' }],
  registry: { token: 'a-secret-of-16-characters', ttl: '10s', maxMetadataSize: '4KiB', maxInstances: 10, maxInstancesPerPeer: 5 },
});

const minimal = { listen: '127.0.0.1:8080', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] };

// Each of these must be a compile error; `@ts-expect-error` itself fails the build when it is not.
const wrong: GatewayConfigInput[] = [
  // @ts-expect-error a misspelled top-level key
  { ...minimal, listne: '127.0.0.1:8080' },
  // @ts-expect-error a misspelled service key
  { ...minimal, services: { shop: { endpoints: ['127.0.0.1:7001'], retires: false } } },
  // @ts-expect-error a misspelled key inside retry
  { ...minimal, services: { shop: { retry: { attempt: 3 } } } },
  // @ts-expect-error a misspelled key inside healthCheck
  { ...minimal, services: { shop: { healthCheck: { intervall: '1s' } } } },
  // @ts-expect-error a misspelled key inside a route
  { ...minimal, routes: [{ prefix: '/', service: 'shop', strip: true }] },
  // @ts-expect-error a balancer that does not exist
  { ...minimal, services: { shop: { balancer: 'random' } } },
  // @ts-expect-error true is no way to turn retries on: an object is
  { ...minimal, services: { shop: { retry: true } } },
  // @ts-expect-error a count as text
  { ...minimal, services: { shop: { retry: { attempts: '3' } } } },
  // @ts-expect-error routes are required
  { listen: '127.0.0.1:8080', services: {} },
];

test('a config typed against the schema validates, and each key reaches the normalized config', () => {
  assert.equal(keyChecks.length, 20);
  assert.equal(wrong.length, 9);
  const c = validateConfig(full);
  assert.equal(c.limits.bodyTimeout, 0);
  assert.equal(c.limits.minBodyRate, 1024);
  assert.equal(c.log.level, 'warn');
  const shop = c.services.get('shop')!;
  assert.deepEqual(shop.endpoints, [{ host: '127.0.0.1', port: 7001, weight: 1 }, { host: '127.0.0.1', port: 7002, weight: 2 }]);
  assert.deepEqual(shop.hash, { kind: 'header', name: 'x-user' });
  assert.ok(shop.retry !== false && shop.retry.perTryTimeout === 2000);
  const off = c.services.get('off')!;
  assert.equal(off.healthCheck, false);
  assert.equal(off.retry, false);
  assert.equal(off.hedge, false);
  const secure = c.services.get('secure')!;
  assert.deepEqual(secure.endpoints, [{ host: '127.0.0.1', port: 7004, weight: 1, tls: true }]);
  assert.deepEqual(secure.tls, { ca: undefined, cert: undefined, key: undefined, servername: 'shop.internal', insecureSkipVerify: true });
  assert.equal(secure.http2, true);
  assert.equal(c.registry.maxInstances, 10);
});

test('the schema printed for editors is plain JSON Schema, with the descriptions', () => {
  const printed = JSON.parse(JSON.stringify(CONFIG_SCHEMA)) as { required: string[]; properties: Record<string, { description?: string }> };
  assert.deepEqual(printed.required, ['listen', 'services', 'routes']);
  assert.match(printed.properties.drainTimeout!.description!, /duration/);
  // TypeBox marks its schemas with symbol keys, which JSON leaves out: nothing else is added.
  assert.ok(!JSON.stringify(CONFIG_SCHEMA).includes('TypeBox'));
});
