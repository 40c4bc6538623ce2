// Config validation in-process: every problem a user can make is reported with its path and a
// hint, all of them in one run; defaults and units are applied to what validates.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConfigError, DEFAULTS, formatProblem, loadConfigFile, locateProblems, parseConfigText, validateConfig, type ConfigProblem,
} from '../src/config/index.js';
import { MINIMAL_YAML, ROOT, tempDir } from './helpers/gateway.js';

type Obj = Record<string, unknown>;


/** A valid config, with parts replaced. `service` is merged into services.shop. */
function config(opts: { top?: Obj; service?: Obj; route?: Obj; routes?: Obj[] } = {}): Obj {
  return {
    listen: '127.0.0.1:8080',
    services: { shop: { endpoints: ['127.0.0.1:7001', '127.0.0.1:7002'], ...opts.service } },
    routes: opts.routes ?? [{ prefix: '/', service: 'shop', ...opts.route }],
    ...opts.top,
  };
}

/** The ConfigError that validating `raw` must throw. */
function rejection(raw: unknown): ConfigError {
  try {
    validateConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'TANDEM_ERR_CONFIG');
    return err;
  }
  assert.fail(`expected the config to be rejected: ${JSON.stringify(raw)}`);
}

/** Asserts exactly these problems (path, message pattern), in any order, and nothing else. */
function assertProblems(raw: unknown, expected: Array<[path: string, message: RegExp | string]>): void {
  const problems = rejection(raw).problems;
  const shown = problems.map(formatProblem).join('\n');
  assert.equal(problems.length, expected.length, `expected ${expected.length} problem(s), got:\n${shown}`);
  for (const [path, message] of expected) {
    const hit = problems.find((p) => p.path === path && (typeof message === 'string' ? p.message === message : message.test(p.message)));
    assert.ok(hit, `no problem at ${path} matching ${String(message)}; got:\n${shown}`);
  }
}

const tmp = tempDir('tandem-config-test-');
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('the minimal config', () => {
  test('the README/issue file parses and validates as is, with every default applied', () => {
    const c = validateConfig(parseConfigText(MINIMAL_YAML, 'gateway.yaml'));
    assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 8080, tls: undefined }]);
    assert.deepEqual(c.admin, { host: '127.0.0.1', port: 9901 });
    assert.deepEqual([...c.services.keys()], ['shop']);
    const d = DEFAULTS.service;
    assert.deepEqual(c.services.get('shop'), {
      name: 'shop',
      protocol: 'http',
      grpc: { idempotentMethods: [], healthService: '' },
      endpoints: [7001, 7002, 7003].map((port) => ({ host: '127.0.0.1', port, weight: d.weight })),
      balancer: d.balancer,
      hash: undefined,
      connectTimeout: d.connectTimeout,
      timeout: d.timeout,
      maxConnections: d.maxConnections,
      concurrencyLimit: d.concurrencyLimit,
      keepAliveTimeout: d.keepAliveTimeout,
      maxResponseHeaderSize: d.maxResponseHeaderSize,
      healthCheck: { ...d.healthCheck },
      outlier: { ...d.outlier },
      panicThreshold: d.panicThreshold,
      retry: { ...d.retry, budget: { ...d.retry.budget } },
      hedge: { ...d.hedge, methods: [...d.hedge.methods] },
    });
    assert.deepEqual(c.routes, [{ prefix: '/', host: undefined, service: 'shop', stripPrefix: DEFAULTS.route.stripPrefix }]);
    assert.deepEqual(c.limits, { ...DEFAULTS.limits });
    assert.deepEqual(c.log, { ...DEFAULTS.log });
    assert.equal(c.drainTimeout, DEFAULTS.drainTimeout);
    assert.deepEqual(c.trustedProxies, []);
  });

  test('the same file as JSON, and examples/gateway.yaml, load from disk', async () => {
    const json = join(tmp, 'minimal.json');
    writeFileSync(json, JSON.stringify(parseConfigText(MINIMAL_YAML, 'gateway.yaml')));
    const fromJson = await loadConfigFile(json);
    assert.equal(fromJson.services.get('shop')!.endpoints.length, 3);
    const example = await loadConfigFile(join(ROOT, 'examples', 'gateway.yaml'));
    assert.deepEqual(example.listen, [{ host: '127.0.0.1', port: 8080, tls: undefined }]);
    assert.equal(example.routes[0]!.service, 'shop');
  });

  test('admin defaults to DEFAULTS.admin when left out', () => {
    const c = validateConfig(config());
    assert.equal(`${c.admin.host}:${c.admin.port}`, DEFAULTS.admin);
  });

  test('the default headersTimeout fits the default requestTimeout (Node refuses anything else)', () => {
    assert.ok(DEFAULTS.limits.headersTimeout <= DEFAULTS.limits.requestTimeout);
  });
});

describe('units', () => {
  test('durations: ms, s, m, h, fractions, plain numbers of milliseconds', () => {
    const c = validateConfig(config({
      service: { connectTimeout: '250ms', timeout: '2s', keepAliveTimeout: 1500 },
      top: { drainTimeout: '1.5s', limits: { headersTimeout: '0.5s', requestTimeout: '1h', keepAliveTimeout: 0 } },
    }));
    const shop = c.services.get('shop')!;
    assert.equal(shop.connectTimeout, 250);
    assert.equal(shop.timeout, 2_000);
    assert.equal(shop.keepAliveTimeout, 1_500);
    assert.equal(c.drainTimeout, 1_500);
    assert.equal(c.limits.headersTimeout, 500);
    assert.equal(c.limits.requestTimeout, 3_600_000);
    assert.equal(c.limits.keepAliveTimeout, 0);
  });

  test('sizes: KiB, MiB, GiB, KB, MB, plain numbers of bytes', () => {
    const c = validateConfig(config({
      service: { maxResponseHeaderSize: '64KiB' },
      top: { limits: { maxHeaderSize: 8192, maxBodySize: '1GiB' } },
    }));
    assert.equal(c.services.get('shop')!.maxResponseHeaderSize, 65_536);
    assert.equal(c.limits.maxHeaderSize, 8_192);
    assert.equal(c.limits.maxBodySize, 1024 ** 3);
    const d = validateConfig(config({ service: { maxResponseHeaderSize: '500KB' }, top: { limits: { maxHeaderSize: '1.5KiB', maxBodySize: '10MiB' } } }));
    assert.equal(d.services.get('shop')!.maxResponseHeaderSize, 500_000);
    assert.equal(d.limits.maxHeaderSize, 1_536);
    assert.equal(d.limits.maxBodySize, 10 * 1024 * 1024);
  });

  test('the request edge limits: maxHeaders, bodyTimeout and minBodyRate (false or 0 turn them off), minBodyRateGrace', () => {
    const c = validateConfig(config({ top: { limits: { maxHeaders: 50, bodyTimeout: '2s', minBodyRate: '1KiB', minBodyRateGrace: 500 } } }));
    assert.deepEqual([c.limits.maxHeaders, c.limits.bodyTimeout, c.limits.minBodyRate, c.limits.minBodyRateGrace], [50, 2_000, 1024, 500]);
    for (const off of [false, 0, '0s']) {
      const d = validateConfig(config({ top: { limits: { bodyTimeout: off, minBodyRate: off === '0s' ? '0B' : off } } }));
      assert.deepEqual([d.limits.bodyTimeout, d.limits.minBodyRate], [0, 0], String(off));
    }
    assertProblems(config({ top: { limits: { bodyTimeout: true, minBodyRate: true, maxHeaders: 0 } } }), [
      ['limits.bodyTimeout', 'true is not accepted — write false to turn it off, or a duration'],
      ['limits.minBodyRate', 'true is not accepted — write false to turn it off, or a rate in bytes per second'],
      ['limits.maxHeaders', 'must be >= 1'],
    ]);
  });

  test('route prefixes must be in the normal form requests are matched in', () => {
    assertProblems(config({ route: { prefix: '/a//b/./c/%7Ed' } }), [['routes[0].prefix', '"/a//b/./c/%7Ed" is not in normal form — requests are matched after normalization; write "/a/b/c/~d"']]);
    assertProblems(config({ route: { prefix: '/../x' } }), [['routes[0].prefix', /is not a valid path: it climbs above the root/]]);
    assertProblems(config({ route: { prefix: '/a%zz' } }), [['routes[0].prefix', /is not a valid path: it holds a malformed percent-escape/]]);
  });

  test('other normalizations: weights, IPv6 endpoints, header names, route hosts', () => {
    const c = validateConfig(config({
      service: { endpoints: [{ address: '127.0.0.1:7001', weight: 5 }, '[::1]:7002'], balancer: 'consistent-hash', hash: { header: 'X-User-Id' } },
      route: { host: 'Shop.Example.COM', stripPrefix: true },
    }));
    const shop = c.services.get('shop')!;
    assert.deepEqual(shop.endpoints, [{ host: '127.0.0.1', port: 7001, weight: 5 }, { host: '::1', port: 7002, weight: 1 }]);
    assert.deepEqual(shop.hash, { kind: 'header', name: 'x-user-id' });
    assert.deepEqual(c.routes[0], { prefix: '/', host: 'shop.example.com', service: 'shop', stripPrefix: true });
    assert.deepEqual(validateConfig(config({ service: { balancer: 'consistent-hash', hash: 'client-ip' } })).services.get('shop')!.hash, { kind: 'client-ip' });
  });

  test('listeners may use port 0; trusted proxies take addresses and CIDR ranges', () => {
    const c = validateConfig(config({ top: { listen: '127.0.0.1:0', admin: '[::1]:0', trustedProxies: ['10.0.0.0/8', '192.168.1.7', '::1', 'fd00::/8'] } }));
    assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 0, tls: undefined }]);
    assert.deepEqual(c.admin, { host: '::1', port: 0 });
    assert.deepEqual(c.trustedProxies, ['10.0.0.0/8', '192.168.1.7', '::1', 'fd00::/8']);
  });
});

describe('every problem has its path and a hint', () => {
  test('unknown key at the top level: did you mean, or the list of known keys', () => {
    assertProblems(config({ top: { adminn: '127.0.0.1:9901' } }), [['adminn', 'unknown key — did you mean admin?']]);
    assertProblems(config({ top: { colour: 'red' } }), [['colour', /^unknown key \(known keys: listen, admin, .*services, routes, registry\)$/]]);
  });

  test('unknown key in a service: timout → timeout, endpoint → endpoints', () => {
    assertProblems(config({ service: { timout: '5s' } }), [['services.shop.timout', 'unknown key — did you mean timeout?']]);
    assertProblems(
      { listen: '127.0.0.1:8080', services: { shop: { endpoint: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] },
      // endpoints is optional (the registry may supply the members), so the typo is the one problem
      [['services.shop.endpoint', 'unknown key — did you mean endpoints?']],
    );
  });

  test('unknown key in a route, in limits, in log, in an endpoint object', () => {
    assertProblems(config({ route: { stripPrefx: true } }), [['routes[0].stripPrefx', 'unknown key — did you mean stripPrefix?']]);
    assertProblems(config({ top: { limits: { maxBodySise: '1MiB' } } }), [['limits.maxBodySise', 'unknown key — did you mean maxBodySize?']]);
    assertProblems(config({ top: { log: { levle: 'debug' } } }), [['log.levle', 'unknown key — did you mean level?']]);
    assertProblems(config({ service: { endpoints: [{ adress: '127.0.0.1:7001' }] } }), [
      ['services.shop.endpoints[0].adress', 'unknown key — did you mean address?'],
      ['services.shop.endpoints[0].address', 'required'],
    ]);
  });

  test('wrong types say what was expected and what was found', () => {
    assertProblems(config({ service: { maxConnections: 'lots' } }), [['services.shop.maxConnections', 'expected integer, got string "lots"']]);
    assertProblems(config({ service: { endpoints: 'x' } }), [['services.shop.endpoints', 'expected array, got string "x"']]);
    assertProblems(config({ route: { stripPrefix: 'yes' } }), [['routes[0].stripPrefix', 'expected boolean, got string "yes"']]);
    assertProblems(config({ top: { listen: 8080 } }), [['listen', 'expected a "host:port" string or a list of listeners, got number 8080']]);
    assertProblems(config({ service: { timeout: true } }), [['services.shop.timeout', 'expected string or number, got boolean true']]);
    assertProblems(config({ top: { routes: { prefix: '/' } } }), [['routes', 'expected array, got an object']]);
    assertProblems(null, [['', 'expected object, got null']]);
  });

  test('out-of-range numbers', () => {
    assertProblems(config({ service: { maxConnections: 0 } }), [['services.shop.maxConnections', /must be >= 1/]]);
    assertProblems(config({ service: { endpoints: [{ address: '127.0.0.1:7001', weight: 0 }] } }), [['services.shop.endpoints[0].weight', /must be >= 1/]]);
    assertProblems(config({ top: { drainTimeout: -1 } }), [['drainTimeout', /must be >= 0/]]);
  });

  test('bad addresses: no port, port out of range, port 0 for an endpoint, bad host, IPv6 without brackets', () => {
    assertProblems(config({ top: { listen: '127.0.0.1' } }), [['listen', /^"127\.0\.0\.1" is not a valid address: expected "host:port", e\.g\. 127\.0\.0\.1:8080$/]]);
    assertProblems(config({ service: { endpoints: ['127.0.0.1:70000'] } }), [['services.shop.endpoints[0]', /^"127\.0\.0\.1:70000" is not a valid address: port 70000 is out of range \(1-65535\)$/]]);
    assertProblems(config({ service: { endpoints: ['127.0.0.1:0'] } }), [['services.shop.endpoints[0]', /port 0 is out of range \(1-65535\)/]]);
    assertProblems(config({ service: { endpoints: ['127.0.0.1:7001', 'my_host!:80'] } }), [['services.shop.endpoints[1]', /"my_host!" is not a valid host name or IP address/]]);
    assertProblems(config({ service: { endpoints: ['::1:7001'] } }), [['services.shop.endpoints[0]', /IPv6 addresses go in brackets: "\[::1\]:8080"/]]);
    // A URL where an address goes gets the address it meant; a dotted quad must be IPv4.
    assertProblems(config({ service: { endpoints: ['http://127.0.0.1:7001'] } }), [['services.shop.endpoints[0]', /a URL is not an address: write "127\.0\.0\.1:7001" \(no http:\/\/\)/]]);
    assertProblems(config({ service: { endpoints: ['https://api.example.com:443/v1'] } }), [['services.shop.endpoints[0]', /write "api\.example\.com:443" \(no https:\/\/, no path\)/]]);
    for (const bad of ['300.1.1.1:80', '1.2.3:80', '1.2.3.4.5:80', '01.2.3.256:80']) {
      assertProblems(config({ service: { endpoints: [bad] } }), [['services.shop.endpoints[0]', /is not a valid IPv4 address \(four numbers from 0 to 255\)/]]);
    }
    assertProblems(config({ top: { admin: 'localhost:http' } }), [['admin', /"http" is not a port number/]]);
    assertProblems(config({ top: { listen: '[::1:8080' } }), [['listen', /expected "\[ipv6\]:port"/]]);
    assertProblems(config({ service: { endpoints: [{ address: '10.0.0.1', weight: 2 }] } }), [['services.shop.endpoints[0].address', /"10\.0\.0\.1" is not a valid address: expected "host:port"/]]);
  });

  test('a route to an unknown service: did you mean, or the list of services', () => {
    assertProblems(config({ route: { service: 'shpo' } }), [['routes[0].service', 'unknown service "shpo" — did you mean shop?']]);
    assertProblems(config({ route: { service: 'billing' } }), [['routes[0].service', 'unknown service "billing" (services: shop)']]);
  });

  test('listen and admin on one port are refused; different hosts may share a port number', () => {
    assertProblems(config({ top: { admin: '127.0.0.1:8080' } }), [['admin', 'port 8080 is also the listen port — two listeners cannot share a port']]);
    assertProblems(config({ top: { admin: '0.0.0.0:8080', registry: { token: 'a-long-enough-token' } } }), [['admin', /port 8080 is also the listen port/]]);
    // the default admin port counts too
    assertProblems(config({ top: { listen: '127.0.0.1:9901' } }), [['admin', /port 9901 is also the listen port/]]);
    assert.doesNotThrow(() => validateConfig(config({ top: { admin: '127.0.0.2:8080' } })));
  });

  test('bad duration and size carry the accepted forms', () => {
    assertProblems(config({ service: { timeout: '5 sec' } }), [['services.shop.timeout', '"5 sec" is not a duration — write e.g. 500ms, 2s, 1m or a number of milliseconds']]);
    assertProblems(config({ top: { limits: { maxBodySize: '10 megs' } } }), [['limits.maxBodySize', '"10 megs" is not a size — write e.g. 64KiB, 10MiB, 1GiB or a number of bytes']]);
    assertProblems(config({ top: { drainTimeout: '1500' } }), [['drainTimeout', /is not a duration/]]);
    assertProblems(config({ service: { maxResponseHeaderSize: 1.5 } }), [['services.shop.maxResponseHeaderSize', 'expected string or integer, got number 1.5']]);
  });

  test('bad enum values suggest the closest', () => {
    assertProblems(config({ service: { balancer: 'round-robbin' } }), [['services.shop.balancer', /^"round-robbin" is not one of peak-ewma, round-robin, .* — did you mean round-robin\?$/]]);
    assertProblems(config({ top: { log: { level: 'debgu' } } }), [['log.level', /is not one of .* — did you mean debug\?$/]]);
    // too far by edit distance, but a prefix of a valid value
    assertProblems(config({ top: { log: { level: 'warning' } } }), [['log.level', /is not one of .* — did you mean warn\?$/]]);
  });

  test('consistent-hash without hash, and hash with another balancer', () => {
    assertProblems(config({ service: { balancer: 'consistent-hash' } }), [['services.shop.hash', /^required with balancer: consistent-hash — e\.g\. hash: \{ header: x-user-id \}/]]);
    assertProblems(config({ service: { hash: 'client-ip' } }), [['services.shop.hash', `only used with balancer: consistent-hash (this service uses ${DEFAULTS.service.balancer})`]]);
    assertProblems(config({ service: { balancer: 'round-robin', hash: { header: 'x-user' } } }), [['services.shop.hash', 'only used with balancer: consistent-hash (this service uses round-robin)']]);
    assertProblems(config({ service: { balancer: 'consistent-hash', hash: { header: 'a', cookie: 'b' } } }), [['services.shop.hash', 'takes exactly one of header, cookie']]);
    assertProblems(config({ service: { balancer: 'consistent-hash', hash: 'client_ip' } }), [['services.shop.hash', /did you mean client-ip\?$/]]);
  });

  test('health checks, outlier detection and panic: one bad value each, at its path', () => {
    const hc = (v: Record<string, unknown>) => config({ service: { healthCheck: v } });
    const ol = (v: Record<string, unknown>) => config({ service: { outlier: v } });
    assertProblems(hc({ path: 'healthz' }), [['services.shop.healthCheck.path', '"healthz" must start with "/"']]);
    assertProblems(hc({ interval: 'often' }), [['services.shop.healthCheck.interval', /^"often" is not a duration/]]);
    assertProblems(hc({ interval: 0 }), [['services.shop.healthCheck.interval', /^must be longer than 0 — write healthCheck: false/]]);
    assertProblems(hc({ timeout: '0s' }), [['services.shop.healthCheck.timeout', /^must be longer than 0/]]);
    assertProblems(hc({ healthyThreshold: 0 }), [['services.shop.healthCheck.healthyThreshold', /must be >= 1/]]);
    assertProblems(hc({ unhealthyThreshold: 1.5 }), [['services.shop.healthCheck.unhealthyThreshold', /expected integer/]]);
    assertProblems(hc({ intervall: '1s' }), [['services.shop.healthCheck.intervall', 'unknown key — did you mean interval?']]);
    assertProblems(config({ service: { healthCheck: true } }), [['services.shop.healthCheck', /^true is not accepted — write false to turn it off/]]);
    assertProblems(config({ service: { healthCheck: 'off' } }), [['services.shop.healthCheck', 'expected object, got string "off"']]);
    assertProblems(ol({ consecutiveFailures: 0 }), [['services.shop.outlier.consecutiveFailures', /must be >= 1/]]);
    assertProblems(ol({ baseEjectionTime: 'soon' }), [['services.shop.outlier.baseEjectionTime', /is not a duration/]]);
    assertProblems(ol({ baseEjectionTime: 0 }), [['services.shop.outlier.baseEjectionTime', 'must be longer than 0']]);
    assertProblems(ol({ maxEjectionTime: '10s' }), [['services.shop.outlier.maxEjectionTime', '10s is shorter than baseEjectionTime (30s)']]);
    assertProblems(ol({ maxEjectedShare: 1.5 }), [['services.shop.outlier.maxEjectedShare', /must be <= 1/]]);
    assertProblems(config({ service: { panicThreshold: -0.1 } }), [['services.shop.panicThreshold', /must be >= 0/]]);
    const rt = (retry: unknown) => config({ service: { retry } });
    assertProblems(rt({ attempts: 0 }), [['services.shop.retry.attempts', /must be >= 1/]]);
    assertProblems(rt({ perTryTimeout: 0 }), [['services.shop.retry.perTryTimeout', /^must be longer than 0 — leave it out/]]);
    assertProblems(rt({ bodyLimit: 'big' }), [['services.shop.retry.bodyLimit', /is not a size/]]);
    assertProblems(rt({ budget: { percnt: 20 } }), [['services.shop.retry.budget.percnt', 'unknown key — did you mean percent?']]);
    assertProblems(rt(true), [['services.shop.retry', /^true is not accepted — write false to turn it off/]]);
    const retried = validateConfig(rt({ perTryTimeout: '200ms', budget: { percent: 50 } })).services.get('shop')!;
    assert.deepEqual(retried.retry, { ...DEFAULTS.service.retry, perTryTimeout: 200, budget: { percent: 50, minPerSecond: 10 } });
    assert.equal(validateConfig(rt(false)).services.get('shop')!.retry, false);
    const hg = (hedge: unknown) => config({ service: { hedge } });
    assertProblems(hg({ methods: ['GET', 'POST'] }), [['services.shop.hedge.methods[1]', /^POST is not idempotent and must not be sent twice/]]);
    assertProblems(hg({ percentile: 100 }), [['services.shop.hedge.percentile', /must be < 100/]]);
    assertProblems(hg({ minDelay: 'soon' }), [['services.shop.hedge.minDelay', /is not a duration/]]);
    assertProblems(hg({ after: 'p95' }), [['services.shop.hedge.after', /^unknown key/]]);
    assert.deepEqual(validateConfig(hg({ percentile: 99, methods: ['GET', 'PUT'] })).services.get('shop')!.hedge, { percentile: 99, minDelay: 10, methods: ['GET', 'PUT'] });
    assert.equal(validateConfig(hg(false)).services.get('shop')!.hedge, false);
    const off = validateConfig(config({ service: { healthCheck: false, outlier: { consecutiveFailures: 3 } } })).services.get('shop')!;
    assert.equal(off.healthCheck, false);
    assert.deepEqual(off.outlier, { ...DEFAULTS.service.outlier, consecutiveFailures: 3 });
  });

  test('duplicate endpoint, duplicate route', () => {
    assertProblems(config({ service: { endpoints: ['127.0.0.1:7001', '127.0.0.1:7002', { address: '127.0.0.1:7001', weight: 3 }] } }), [['services.shop.endpoints[2]', '127.0.0.1:7001 is listed twice']]);
    assertProblems(config({ routes: [{ prefix: '/api', service: 'shop' }, { prefix: '/', service: 'shop' }, { prefix: '/api', service: 'shop', stripPrefix: true }] }), [['routes[2]', 'same host and prefix as routes[0] — it could never match']]);
    // the same prefix on different hosts is fine
    assert.doesNotThrow(() => validateConfig(config({ routes: [{ prefix: '/', service: 'shop', host: 'a.example' }, { prefix: '/', service: 'shop', host: 'b.example' }] })));
  });

  test('route prefix must start with "/"; route host must be a host name', () => {
    assertProblems(config({ route: { prefix: 'api' } }), [['routes[0].prefix', '"api" must start with "/"']]);
    assertProblems(config({ route: { host: 'shop.example.com:8080' } }), [['routes[0].host', /is not a host name \(no port/]]);
  });

  test('bad trustedProxies entries, each at its index', () => {
    assertProblems(config({ top: { trustedProxies: ['10.0.0.0/8', '10.0.0.0/33', 'proxy.local'] } }), [
      ['trustedProxies[1]', '"10.0.0.0/33" is not an IP address or CIDR range (e.g. 10.0.0.0/8)'],
      ['trustedProxies[2]', '"proxy.local" is not an IP address or CIDR range (e.g. 10.0.0.0/8)'],
    ]);
  });

  test('bad service names are reported once, at the name', () => {
    assertProblems(
      { listen: '127.0.0.1:8080', services: { 'my shop': { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'my shop' }] },
      [['services["my shop"]', /not a valid service name/]],
    );
  });

  test('missing required keys, empty lists', () => {
    assertProblems({ services: { shop: { endpoints: [] } }, routes: [] }, [
      ['listen', 'required'],
      ['services.shop.endpoints', 'needs at least 1 item'],
      ['routes', 'needs at least 1 item'],
    ]);
  });

  test('limits.headersTimeout longer than limits.requestTimeout is refused (Node would throw at bind)', () => {
    assertProblems(config({ top: { limits: { headersTimeout: '20s', requestTimeout: '10s' } } }), [
      ['limits.headersTimeout', /^20s is longer than limits\.requestTimeout \(10s\) — .*at most 10s$/],
    ]);
    // the default headersTimeout counts too
    assertProblems(config({ top: { limits: { requestTimeout: '5s' } } }), [
      ['limits.headersTimeout', /^10s \(the default\) is longer than limits\.requestTimeout \(5s\)/],
    ]);
    // equal is fine; requestTimeout 0 turns the request timeout off
    assert.doesNotThrow(() => validateConfig(config({ top: { limits: { headersTimeout: '10s', requestTimeout: '10s' } } })));
    assert.doesNotThrow(() => validateConfig(config({ top: { limits: { headersTimeout: '20s', requestTimeout: 0 } } })));
    // a malformed value is reported once, not compared as its default
    assertProblems(config({ top: { limits: { headersTimeout: 'soon', requestTimeout: '5s' } } }), [['limits.headersTimeout', /"soon" is not a duration/]]);
  });

  test('several errors at once are all reported in one run', () => {
    const err = rejection({
      listen: '127.0.0.1',
      admin: '127.0.0.1:9901',
      colour: 'red',
      limits: { maxBodySize: '10 megs' },
      services: {
        shop: { endpoints: ['127.0.0.1:7001', '127.0.0.1:7001'], timout: '1s', balancer: 'round-robbin', maxConnections: 'lots' },
        blog: { endpoints: '127.0.0.1:7002', hash: 'client-ip' },
      },
      routes: [{ prefix: 'shop', service: 'shpo' }],
      trustedProxies: ['nope'],
    });
    const paths = err.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, [
      'colour',
      'limits.maxBodySize',
      'listen',
      'routes[0].prefix',
      'routes[0].service',
      'services.blog.endpoints',
      'services.blog.hash',
      'services.shop.balancer',
      'services.shop.endpoints[1]',
      'services.shop.maxConnections',
      'services.shop.timout',
      'trustedProxies[0]',
    ].sort(), err.message);
    // the message lists every one, each on its own line as "path: message"
    assert.match(err.message, /^12 config problems:\n/);
    for (const p of err.problems) assert.ok(err.message.includes(`\n  ${p.path}: ${p.message}`), p.path);
    assert.ok(err.message.includes('services.shop.timout: unknown key — did you mean timeout?'));
    assert.ok(err.message.includes('routes[0].service: unknown service "shpo" — did you mean shop?'));
  });
});

describe('parsing files', () => {
  test('invalid YAML reports line and column', () => {
    const broken = 'listen: 127.0.0.1:8080\nservices:\n  shop:\n    endpoints: [127.0.0.1:7001\nroutes: []\n';
    const err = captureParse(broken, 'gateway.yaml');
    assert.equal(err.file, 'gateway.yaml');
    assert.equal(err.problems.length, 1);
    assert.equal(err.problems[0]!.path, 'line 5, column 1');
    assert.match(err.problems[0]!.message, /^not valid YAML: /);
    assert.match(err.message, /^1 config problem in gateway\.yaml:\n {2}line 5, column 1: not valid YAML: /);
  });

  test('YAML duplicate keys and tab indentation are errors with a position', () => {
    const dup = captureParse('listen: 127.0.0.1:8080\nlisten: 127.0.0.1:8081\n', 'g.yml');
    assert.equal(dup.problems[0]!.path, 'line 2, column 1');
    assert.match(dup.problems[0]!.message, /unique/);
    const tabs = captureParse('listen: 127.0.0.1:8080\nservices:\n\tshop: {}\n', 'g.yaml');
    assert.equal(tabs.problems[0]!.path, 'line 3, column 1');
    assert.match(tabs.problems[0]!.message, /[Tt]ab/);
  });

  test('invalid JSON in a .json file reports line and column', async () => {
    const file = join(tmp, 'broken.json');
    writeFileSync(file, '{\n  "listen": "127.0.0.1:8080",\n}\n');
    const err = await captureLoad(file);
    assert.equal(err.file, file);
    assert.equal(err.problems.length, 1);
    assert.equal(err.problems[0]!.path, 'line 3, column 1');
    assert.match(err.problems[0]!.message, /^not valid JSON: /);
    // truncated: the position is the end of the text
    const cut = captureParse('{"listen": ', 'x.json');
    assert.equal(cut.problems[0]!.path, 'line 1, column 12');
    // a .json file is parsed as JSON, not as YAML (which would accept this)
    const yamlish = captureParse('listen: 127.0.0.1:8080\n', 'x.json');
    assert.match(yamlish.problems[0]!.message, /^not valid JSON/);
  });

  test('a .json file that starts with a byte-order mark loads', async () => {
    const file = join(tmp, 'bom.json');
    writeFileSync(file, `\uFEFF${JSON.stringify(config())}`);
    const loaded = await loadConfigFile(file);
    assert.equal(loaded.services.get('shop')!.endpoints.length, 2);
  });

  test('a missing file is a config error naming the file', async () => {
    const file = join(tmp, 'does-not-exist.yaml');
    const err = await captureLoad(file);
    assert.equal(err.file, file);
    assert.deepEqual(err.problems, [{ path: '', message: 'cannot read the file: no such file (ENOENT)' }]);
    assert.ok(err.message.includes(file));
  });

  test('an empty file is reported, not crashed on', async () => {
    const file = join(tmp, 'empty.yaml');
    writeFileSync(file, '');
    const err = await captureLoad(file);
    assert.deepEqual(err.problems.map(formatProblem), ['expected object, got null']);
  });

  test('validation problems from a file carry the file name', async () => {
    const file = join(tmp, 'bad.yaml');
    writeFileSync(file, MINIMAL_YAML.replace('endpoints:', 'endpoint:'));
    const err = await captureLoad(file);
    assert.equal(err.file, file);
    assert.match(err.message, new RegExp(`^1 config problem in ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\n`));
    assert.ok(err.problems.some((p) => formatProblem(p) === 'services.shop.endpoint: unknown key — did you mean endpoints? (line 5, column 5)'), err.message);
  });
});

function captureParse(text: string, file: string): ConfigError {
  try {
    parseConfigText(text, file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail(`expected ${file} to be rejected`);
}

async function captureLoad(file: string): Promise<ConfigError> {
  try {
    await loadConfigFile(file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail(`expected ${file} to be rejected`);
}

describe('registry settings', () => {
  test('a service without endpoints is valid (members from the registry); registry defaults apply', () => {
    const c = validateConfig({ listen: '127.0.0.1:8080', services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] });
    assert.deepEqual(c.services.get('shop')!.endpoints, []);
    assert.deepEqual(c.registry, {
      token: undefined, tokenFile: undefined, ttl: 10_000, maxMetadataSize: 4096, maxInstances: 50_000, maxInstancesPerPeer: 1000,
      etcd: [], etcdPrefix: '/tandem', etcdUser: undefined, etcdPassword: undefined, etcdCa: undefined, etcdCert: undefined, etcdKey: undefined,
    });
  });

  test('etcd keys: members are host:port or URLs; the other etcd keys need members; cert and key go together', () => {
    const base = { listen: '127.0.0.1:8080', services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] };
    const c = validateConfig({ ...base, registry: { etcd: ['127.0.0.1:2379', 'https://etcd-2:2379'], etcdPrefix: '/ha', etcdUser: 'gw', etcdPassword: 'pw' } });
    assert.deepEqual(c.registry.etcd, ['127.0.0.1:2379', 'https://etcd-2:2379']);
    assert.equal(c.registry.etcdPrefix, '/ha');
    assertProblems({ ...base, registry: { etcd: ['nope'], etcdCert: '/c.pem' } }, [
      ['registry.etcd[0]', /not host:port or an http\(s\):\/\/ URL/],
      ['registry.etcdKey', /go together/],
    ]);
    assertProblems({ ...base, registry: { etcdPrefix: '/x', etcdPassword: 'pw' } }, [
      ['registry.etcdPrefix', /no effect without registry.etcd/],
      ['registry.etcdPassword', /no effect without registry.etcd/],
      ['registry.etcdPassword', /needs registry.etcdUser/],
    ]);
    assertProblems({ ...base, registry: { etcd: [], etcdPrefix: 'no-slash' } }, [['registry.etcd', /at least 1 item/], ['registry.etcdPrefix', /not a key prefix/]]);
  });

  test('registry keys are checked with paths and hints', () => {
    const base = { listen: '127.0.0.1:8080', services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] };
    assertProblems({ ...base, registry: { token: "short", ttl: "500ms", tll: 1 } }, [
      ['registry.token', /at least 16 characters/],
      ['registry.ttl', /out of range — from 1s to 5m/],
      ['registry.tll', /did you mean ttl\?/],
    ]);
    const c = validateConfig({ ...base, registry: { token: 'a-long-enough-token', ttl: '3s', maxMetadataSize: '1KiB', maxInstancesPerPeer: 10 } });
    assert.equal(c.registry.ttl, 3000);
    assert.equal(c.registry.maxMetadataSize, 1024);
    assert.equal(c.registry.maxInstancesPerPeer, 10);
    assert.equal(c.registry.token, 'a-long-enough-token');
    assertProblems({ ...base, registry: { token: 'a-long-enough-token', tokenFile: '/run/secrets/tandem' } }, [['registry.tokenFile', /not both/]]);
  });

  test('an admin listener off loopback needs a secret given to it: the generated one never leaves the host', () => {
    const base = { listen: '127.0.0.1:8080', services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] };
    for (const admin of ['0.0.0.0:9901', '10.1.2.3:9901', '[::]:9901']) {
      assertProblems({ ...base, admin }, [['registry.token', /required when the admin listener .* is not on a loopback address — set registry\.token or registry\.tokenFile/]]);
      assert.doesNotThrow(() => validateConfig({ ...base, admin, registry: { token: 'a-long-enough-token' } }));
      assert.doesNotThrow(() => validateConfig({ ...base, admin, registry: { tokenFile: '/run/secrets/tandem' } }));
    }
    for (const admin of ['127.0.0.1:9901', '127.0.0.7:9901', '[::1]:9901', 'localhost:9901']) assert.doesNotThrow(() => validateConfig({ ...base, admin }), admin);
  });
});

describe('problems point at the line and column of the file', () => {
  test('YAML and JSON: an unknown key, a bad value, a bad list item, a missing key', () => {
    const yaml = [
      'listen: 127.0.0.1:8080',        // 1
      'services:',                     // 2
      '  shop:',                       // 3
      '    endpoints:',                // 4
      '      - 127.0.0.1:7001',        // 5
      '      - 300.1.1.1:80',          // 6
      '    retires: 3',                // 7
      '    timeout: 5 sec',            // 8
      'routes:',                       // 9
      '  - prefix: /',                 // 10
      '    service: nope',             // 11
      '',
    ].join('\n');
    const problems = locateProblems(yaml, problemsOf(parseConfigText(yaml, 'g.yaml')));
    const at = (path: string) => problems.find((p) => p.path === path);
    assert.deepEqual([at('services.shop.endpoints[1]')?.line, at('services.shop.endpoints[1]')?.column], [6, 9]);
    assert.deepEqual([at('services.shop.retires')?.line, at('services.shop.timeout')?.line, at('services.shop.timeout')?.column], [7, 8, 5]);
    assert.equal(at('routes[0].service')?.line, 11);
    assert.match(formatProblem(at('services.shop.timeout')!), /^services\.shop\.timeout: .* \(line 8, column 5\)$/);
    const json = JSON.stringify({ listen: '127.0.0.1:8080', services: { shop: { endpoints: ['127.0.0.1:7001'], timout: '1s' } }, routes: [{ prefix: '/', service: 'shop' }] }, null, 2);
    const jp = locateProblems(json, problemsOf(parseConfigText(json, 'g.json')));
    assert.equal(jp[0]!.path, 'services.shop.timout');
    assert.equal(jp[0]!.line, 8, 'after the endpoints list (lines 5–7)');
  });
});

function problemsOf(raw: unknown): readonly ConfigProblem[] {
  try {
    validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}
