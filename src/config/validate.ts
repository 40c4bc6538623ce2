import type { ErrorObject } from 'ajv';
import { BlockList, isIP } from 'node:net';
import { formatHostPort, parseEndpointAddress, parseHostPort, type HostPort } from '../core/address.js';
import { isLoopbackHost, TOKEN_ENV, TOKEN_FILE_ENV } from '../core/secret.js';
import { formatDuration, formatSize, parseDuration, parseSize } from '../core/units.js';
import { closest } from '../core/suggest.js';
import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';
import type { BalancerKind } from '../core/balancing.js';
import { isIdempotent } from '../core/methods.js';
import { isPathProblem, normalizePath } from '../core/path.js';
import { validate as checkShape } from './config-shape.js';
import { readTls, readUpstreamTls } from './tls.js';
import { DEFAULTS } from './defaults.js';
import { ConfigError, type ConfigProblem, joinPath, pointerToPath } from './problems.js';
import type {
  AccessLogMode, CacheConfig, EndpointConfig, GatewayConfig, HashOn, HealthCheckConfig, HedgeConfig, ListenerConfig, LogLevel, OutlierConfig, RegistryConfig, RetryConfig, RouteConfig, ServiceConfig,
} from './types.js';

type Raw = Record<string, unknown>;

/**
 * Validates a parsed config document and returns it normalized (defaults applied, units
 * resolved). Throws ConfigError listing every problem with its path and, where one exists,
 * a hint.
 */
export function validateConfig(raw: unknown, file?: string): GatewayConfig {
  const problems: ConfigProblem[] = [];
  if (!checkShape(raw)) problems.push(...shapeProblems(checkShape.errors ?? []));
  // Semantic checks run even when the shape is off, so one run reports everything;
  // each guards its own types and skips what the shape check already reported.
  const config = normalize(isObject(raw) ? raw : {}, problems);
  if (problems.length > 0) throw new ConfigError(dedupe(problems), file);
  return config;
}

function shapeProblems(errors: ErrorObject[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const e of errors) {
    // if/then/else reports the branch's own errors too; the summary line adds nothing.
    if (e.keyword === 'if') continue;
    // A bad service name is reported once, by its propertyNames error, not again by the pattern inside it.
    if (e.schemaPath.includes('/propertyNames/')) continue;
    const path = pointerToPath(e.instancePath);
    out.push(describe(e, path));
  }
  return out;
}

function describe(e: ErrorObject, path: string): ConfigProblem {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const hint = closest(key, known);
      return { path: joinPath(path, key), message: `unknown key${hint ? ` — did you mean ${hint}?` : known.length ? ` (known keys: ${known.join(', ')})` : ''}` };
    }
    case 'required':
      return { path: joinPath(path, String(p.missingProperty)), message: 'required' };
    case 'type': {
      const expected = (e.parentSchema as { 'x-expected'?: string } | undefined)?.['x-expected'] ?? String(p.type).replace(',', ' or ');
      return { path, message: `expected ${expected}, got ${kindOf(e.data)}` };
    }
    case 'enum': {
      const allowed = (p.allowedValues as unknown[]).map(String);
      const hint = typeof e.data === 'string' ? closest(e.data, allowed) : undefined;
      return { path, message: `${JSON.stringify(e.data)} is not one of ${allowed.join(', ')}${hint ? ` — did you mean ${hint}?` : ''}` };
    }
    case 'format':
      return p.format === 'duration'
        ? { path, message: `${JSON.stringify(e.data)} is not a duration — write e.g. 500ms, 2s, 1m or a number of milliseconds` }
        : { path, message: `${JSON.stringify(e.data)} is not a size — write e.g. 64KiB, 10MiB, 1GiB or a number of bytes` };
    case 'const': {
      const expected = (e.parentSchema as { 'x-expected'?: string } | undefined)?.['x-expected'] ?? 'an object with its settings';
      return { path, message: `${JSON.stringify(e.data)} is not accepted — write false to turn it off, or ${expected}` };
    }
    case 'minLength':
      return { path, message: `needs at least ${String(p.limit)} character${p.limit === 1 ? '' : 's'}` };
    case 'minItems':
      return { path, message: `needs at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}` };
    case 'minProperties':
      return { path, message: `needs at least ${String(p.limit)} entr${p.limit === 1 ? 'y' : 'ies'}` };
    case 'maxProperties':
      return { path, message: `takes exactly one of ${Object.keys((e.parentSchema as { properties?: object }).properties ?? {}).join(', ')}` };
    case 'pattern':
      if (path === 'registry.etcdPrefix') return { path, message: `${JSON.stringify(e.data)} is not a key prefix: "/" then letters, digits, "_", ".", "/" and "-", not ending in "/" (as "/tandem")` };
      return { path, message: `${JSON.stringify(e.data)} is not a valid name (letters, digits, "_", "." and "-")` };
    case 'propertyNames':
      return { path: pointerToPath(`${e.instancePath}/${String(p.propertyName).replace(/~/g, '~0').replace(/\//g, '~1')}`), message: 'not a valid service name (letters, digits, "_", "." and "-")' };
    default:
      return { path, message: e.message ?? 'invalid' };
  }
}

function normalize(raw: Raw, problems: ConfigProblem[]): GatewayConfig {
  const listen = listeners(raw.listen, problems);
  const admin = address(raw.admin ?? DEFAULTS.admin, 'admin', true, problems) ?? { host: '127.0.0.1', port: 0 };
  if (listen.some((l) => l.port !== 0 && l.port === admin.port && hostsOverlap(l.host, admin.host))) {
    problems.push({ path: 'admin', message: `port ${admin.port} is also the listen port — two listeners cannot share a port` });
  }
  const limits = isObject(raw.limits) ? raw.limits : {};
  const log = isObject(raw.log) ? raw.log : {};
  const limitsConfig = {
    maxHeaderSize: sizeOr(limits.maxHeaderSize, DEFAULTS.limits.maxHeaderSize),
    maxHeaders: typeof limits.maxHeaders === 'number' ? limits.maxHeaders : DEFAULTS.limits.maxHeaders,
    maxBodySize: sizeOr(limits.maxBodySize, DEFAULTS.limits.maxBodySize),
    headersTimeout: durationOr(limits.headersTimeout, DEFAULTS.limits.headersTimeout),
    requestTimeout: durationOr(limits.requestTimeout, DEFAULTS.limits.requestTimeout),
    bodyTimeout: limits.bodyTimeout === false ? 0 : durationOr(limits.bodyTimeout, DEFAULTS.limits.bodyTimeout),
    minBodyRate: limits.minBodyRate === false ? 0 : sizeOr(limits.minBodyRate, DEFAULTS.limits.minBodyRate),
    minBodyRateGrace: durationOr(limits.minBodyRateGrace, DEFAULTS.limits.minBodyRateGrace),
    keepAliveTimeout: durationOr(limits.keepAliveTimeout, DEFAULTS.limits.keepAliveTimeout),
  };
  // Node's http server throws when headersTimeout exceeds a non-zero requestTimeout. Only
  // compared when both are valid (or defaulted): a malformed one is reported already.
  const { headersTimeout, requestTimeout } = limitsConfig;
  if (durationOk(limits.headersTimeout) && durationOk(limits.requestTimeout) && requestTimeout > 0 && headersTimeout > requestTimeout) {
    const dflt = limits.headersTimeout === undefined ? ' (the default)' : '';
    problems.push({
      path: 'limits.headersTimeout',
      message: `${formatDuration(headersTimeout)}${dflt} is longer than limits.requestTimeout (${formatDuration(requestTimeout)}) — the headers are part of the request; set headersTimeout at most ${formatDuration(requestTimeout)}`,
    });
  }
  const registryConfig = registry(raw.registry, problems);
  remoteAdminNeedsToken(admin, registryConfig, problems);
  const services = new Map<string, ServiceConfig>();
  if (isObject(raw.services)) {
    for (const [name, value] of Object.entries(raw.services)) {
      if (isObject(value)) services.set(name, service(name, value, problems));
    }
  }
  return {
    listen,
    admin,
    trustedProxies: trustedProxies(raw.trustedProxies, problems),
    drainTimeout: durationOr(raw.drainTimeout, DEFAULTS.drainTimeout),
    peers: peers(raw.peers, admin, problems),
    virtualAddress: virtualAddress(raw.virtualAddress, problems),
    limits: limitsConfig,
    log: {
      level: (typeof log.level === 'string' ? log.level : DEFAULTS.log.level) as LogLevel,
      access: (typeof log.access === 'string' ? log.access : DEFAULTS.log.access) as AccessLogMode,
    },
    services,
    routes: routes(raw.routes, services, problems),
    registry: registryConfig,
  };
}

/**
 * An admin listener other hosts can reach needs a secret they were given: the generated one
 * stays in a file on this host (docs/security.md).
 */
function remoteAdminNeedsToken(admin: HostPort, registry: RegistryConfig, problems: ConfigProblem[]): void {
  if (isLoopbackHost(admin.host) || registry.token !== undefined || registry.tokenFile !== undefined) return;
  if (process.env[TOKEN_ENV] || process.env[TOKEN_FILE_ENV]) return;
  problems.push({
    path: 'registry.token',
    message: `required when the admin listener (${formatHostPort(admin.host, admin.port)}) is not on a loopback address — set registry.token or registry.tokenFile (or ${TOKEN_ENV} / ${TOKEN_FILE_ENV}); instances on other hosts send the same secret`,
  });
}

function registry(raw: unknown, problems: ConfigProblem[]): RegistryConfig {
  const d = DEFAULTS.registry;
  const r = isObject(raw) ? raw : {};
  const ttl = durationOr(r.ttl, d.ttl);
  if (durationOk(r.ttl) && (ttl < DISCOVERY_DEFAULTS.minTtl || ttl > DISCOVERY_DEFAULTS.maxTtl)) {
    problems.push({ path: 'registry.ttl', message: `${formatDuration(ttl)} is out of range — from ${formatDuration(DISCOVERY_DEFAULTS.minTtl)} to ${formatDuration(DISCOVERY_DEFAULTS.maxTtl)}` });
  }
  if (typeof r.token === 'string' && /\s/.test(r.token)) problems.push({ path: 'registry.token', message: 'must not contain white space' });
  if (typeof r.token === 'string' && typeof r.tokenFile === 'string') problems.push({ path: 'registry.tokenFile', message: 'give registry.token or registry.tokenFile, not both' });
  return {
    token: typeof r.token === 'string' ? r.token : d.token,
    tokenFile: typeof r.tokenFile === 'string' ? r.tokenFile : d.tokenFile,
    ttl,
    maxMetadataSize: sizeOr(r.maxMetadataSize, d.maxMetadataSize),
    maxInstances: typeof r.maxInstances === 'number' ? r.maxInstances : d.maxInstances,
    maxInstancesPerPeer: typeof r.maxInstancesPerPeer === 'number' ? r.maxInstancesPerPeer : d.maxInstancesPerPeer,
    ...etcdConfig(r, problems),
  };
}

function etcdConfig(r: Raw, problems: ConfigProblem[]): Pick<RegistryConfig, 'etcd' | 'etcdPrefix' | 'etcdUser' | 'etcdPassword' | 'etcdCa' | 'etcdCert' | 'etcdKey'> {
  const d = DEFAULTS.registry;
  const str = (v: unknown, dflt: string | undefined) => (typeof v === 'string' ? v : dflt);
  const etcd = Array.isArray(r.etcd) ? r.etcd.filter((e): e is string => typeof e === 'string') : [...d.etcd];
  etcd.forEach((e, i) => {
    if (!/^https?:\/\//.test(e) && typeof parseHostPort(e) === 'string') problems.push({ path: `registry.etcd[${i}]`, message: `"${e}" is not host:port or an http(s):// URL` });
  });
  for (const key of ['etcdPrefix', 'etcdUser', 'etcdPassword', 'etcdCa', 'etcdCert', 'etcdKey'] as const) {
    if (r[key] !== undefined && r.etcd === undefined) problems.push({ path: `registry.${key}`, message: 'has no effect without registry.etcd' });
  }
  if (r.etcdPassword !== undefined && r.etcdUser === undefined) problems.push({ path: 'registry.etcdPassword', message: 'a password needs registry.etcdUser' });
  if ((r.etcdCert === undefined) !== (r.etcdKey === undefined)) problems.push({ path: r.etcdCert === undefined ? 'registry.etcdCert' : 'registry.etcdKey', message: 'registry.etcdCert and registry.etcdKey go together' });
  return {
    etcd, etcdPrefix: str(r.etcdPrefix, d.etcdPrefix)!, etcdUser: str(r.etcdUser, d.etcdUser), etcdPassword: str(r.etcdPassword, d.etcdPassword),
    etcdCa: str(r.etcdCa, d.etcdCa), etcdCert: str(r.etcdCert, d.etcdCert), etcdKey: str(r.etcdKey, d.etcdKey),
  };
}

function service(name: string, raw: Raw, problems: ConfigProblem[]): ServiceConfig {
  const base = joinPath('services', name);
  const d = DEFAULTS.service;
  const balancer = (typeof raw.balancer === 'string' ? raw.balancer : d.balancer) as BalancerKind;
  const endpoints: EndpointConfig[] = [];
  const seen = new Set<string>();
  if (Array.isArray(raw.endpoints)) {
    raw.endpoints.forEach((item: unknown, i) => {
      const path = joinPath(joinPath(base, 'endpoints'), i);
      const text = typeof item === 'string' ? item : isObject(item) ? item.address : undefined;
      if (typeof text !== 'string') return; // reported by the shape check
      const hp = parseEndpointAddress(text);
      if (typeof hp === 'string') {
        problems.push({ path: isObject(item) ? joinPath(path, 'address') : path, message: `"${text}" is not a valid address: ${hp}` });
        return;
      }
      const key = formatHostPort(hp.host, hp.port);
      if (seen.has(key)) problems.push({ path, message: `${text} is listed twice` });
      seen.add(key);
      const weight = isObject(item) && typeof item.weight === 'number' ? item.weight : d.weight;
      endpoints.push({ host: hp.host, port: hp.port, weight, ...(hp.tls ? { tls: true } : {}) });
    });
  }
  const hash = hashOn(raw.hash);
  if (balancer === 'consistent-hash' && !hash && raw.hash === undefined) {
    problems.push({ path: joinPath(base, 'hash'), message: 'required with balancer: consistent-hash — e.g. hash: { header: x-user-id }, { cookie: session } or client-ip' });
  }
  if (balancer !== 'consistent-hash' && raw.hash !== undefined) {
    problems.push({ path: joinPath(base, 'hash'), message: `only used with balancer: consistent-hash (this service uses ${balancer})` });
  }
  const g = isObject(raw.grpc) ? raw.grpc : {};
  if (raw.grpc !== undefined && raw.protocol !== 'grpc') problems.push({ path: joinPath(base, 'grpc'), message: 'only used with protocol: grpc' });
  return {
    name,
    protocol: raw.protocol === 'grpc' ? 'grpc' : d.protocol,
    grpc: {
      idempotentMethods: Array.isArray(g.idempotentMethods) ? g.idempotentMethods.filter((m): m is string => typeof m === 'string') : [...d.grpc.idempotentMethods],
      healthService: typeof g.healthService === 'string' ? g.healthService : d.grpc.healthService,
    },
    endpoints,
    balancer,
    hash,
    connectTimeout: durationOr(raw.connectTimeout, d.connectTimeout),
    timeout: durationOr(raw.timeout, d.timeout),
    maxConnections: typeof raw.maxConnections === 'number' ? raw.maxConnections : d.maxConnections,
    concurrencyLimit: typeof raw.concurrencyLimit === 'number' ? raw.concurrencyLimit : d.concurrencyLimit,
    keepAliveTimeout: durationOr(raw.keepAliveTimeout, d.keepAliveTimeout),
    maxResponseHeaderSize: sizeOr(raw.maxResponseHeaderSize, d.maxResponseHeaderSize),
    healthCheck: healthCheck(raw.healthCheck, joinPath(base, 'healthCheck'), problems),
    outlier: outlier(raw.outlier, joinPath(base, 'outlier'), problems),
    panicThreshold: typeof raw.panicThreshold === 'number' ? raw.panicThreshold : d.panicThreshold,
    retry: retry(raw.retry, joinPath(base, 'retry'), problems),
    hedge: hedge(raw.hedge, joinPath(base, 'hedge'), problems),
    tls: readUpstreamTls(isObject(raw.tls) ? raw.tls : undefined, joinPath(base, 'tls'), problems),
    http2: typeof raw.http2 === 'boolean' ? raw.http2 : d.http2,
  };
}

function hedge(raw: unknown, base: string, problems: ConfigProblem[]): HedgeConfig | false {
  if (raw === false) return false;
  const d = DEFAULTS.service.hedge;
  const r = isObject(raw) ? raw : {};
  const methods = Array.isArray(r.methods) ? r.methods.filter((m): m is string => typeof m === 'string') : [...d.methods];
  methods.forEach((m, i) => {
    // Both copies of a hedged request may run to completion on two endpoints.
    if (!isIdempotent(m)) problems.push({ path: joinPath(joinPath(base, 'methods'), i), message: `${m} is not idempotent and must not be sent twice — hedge only GET, HEAD, OPTIONS, PUT, DELETE or TRACE` });
  });
  return {
    percentile: typeof r.percentile === 'number' ? r.percentile : d.percentile,
    minDelay: durationOr(r.minDelay, d.minDelay),
    methods,
  };
}

function retry(raw: unknown, base: string, problems: ConfigProblem[]): RetryConfig | false {
  if (raw === false) return false;
  const d = DEFAULTS.service.retry;
  const r = isObject(raw) ? raw : {};
  const b = isObject(r.budget) ? r.budget : {};
  const perTryTimeout = r.perTryTimeout === undefined ? d.perTryTimeout : parseDuration(r.perTryTimeout);
  if (perTryTimeout === 0) problems.push({ path: joinPath(base, 'perTryTimeout'), message: 'must be longer than 0 — leave it out to give each attempt the time left' });
  return {
    attempts: typeof r.attempts === 'number' ? r.attempts : d.attempts,
    perTryTimeout,
    bodyLimit: sizeOr(r.bodyLimit, d.bodyLimit),
    idempotencyHeader: typeof r.idempotencyHeader === 'string' ? r.idempotencyHeader.toLowerCase() : d.idempotencyHeader,
    budget: {
      percent: typeof b.percent === 'number' ? b.percent : d.budget.percent,
      minPerSecond: typeof b.minPerSecond === 'number' ? b.minPerSecond : d.budget.minPerSecond,
    },
  };
}

function healthCheck(raw: unknown, base: string, problems: ConfigProblem[]): HealthCheckConfig | false {
  if (raw === false) return false;
  const d = DEFAULTS.service.healthCheck;
  const r = isObject(raw) ? raw : {};
  const path = typeof r.path === 'string' ? r.path : d.path;
  if (!path.startsWith('/')) problems.push({ path: joinPath(base, 'path'), message: `"${path}" must start with "/"` });
  const config: HealthCheckConfig = {
    path,
    interval: durationOr(r.interval, d.interval),
    timeout: durationOr(r.timeout, d.timeout),
    healthyThreshold: typeof r.healthyThreshold === 'number' ? r.healthyThreshold : d.healthyThreshold,
    unhealthyThreshold: typeof r.unhealthyThreshold === 'number' ? r.unhealthyThreshold : d.unhealthyThreshold,
  };
  for (const key of ['interval', 'timeout'] as const) {
    if (durationOk(r[key]) && config[key] === 0) problems.push({ path: joinPath(base, key), message: 'must be longer than 0 — write healthCheck: false to turn checks off' });
  }
  return config;
}

function outlier(raw: unknown, base: string, problems: ConfigProblem[]): OutlierConfig {
  const d = DEFAULTS.service.outlier;
  const r = isObject(raw) ? raw : {};
  const config: OutlierConfig = {
    consecutiveFailures: typeof r.consecutiveFailures === 'number' ? r.consecutiveFailures : d.consecutiveFailures,
    baseEjectionTime: durationOr(r.baseEjectionTime, d.baseEjectionTime),
    maxEjectionTime: durationOr(r.maxEjectionTime, d.maxEjectionTime),
    maxEjectedShare: typeof r.maxEjectedShare === 'number' ? r.maxEjectedShare : d.maxEjectedShare,
  };
  if (durationOk(r.baseEjectionTime) && config.baseEjectionTime === 0) {
    problems.push({ path: joinPath(base, 'baseEjectionTime'), message: 'must be longer than 0' });
  }
  if (durationOk(r.baseEjectionTime) && durationOk(r.maxEjectionTime) && config.maxEjectionTime < config.baseEjectionTime) {
    problems.push({
      path: joinPath(base, 'maxEjectionTime'),
      message: `${formatDuration(config.maxEjectionTime)} is shorter than baseEjectionTime (${formatDuration(config.baseEjectionTime)})`,
    });
  }
  return config;
}

/** A route's `cache`: true takes every default, an object the keys it sets. */
function cacheConfig(raw: unknown, path: string, problems: ConfigProblem[]): false | CacheConfig {
  if (raw !== true && !isObject(raw)) return false;
  const c = isObject(raw) ? raw : {};
  const d = DEFAULTS.cache;
  const out: CacheConfig = {
    maxSize: sizeOr(c.maxSize, d.maxSize),
    maxEntrySize: sizeOr(c.maxEntrySize, d.maxEntrySize),
    staleIfError: durationOr(c.staleIfError, d.staleIfError),
    staleWhileRevalidate: durationOr(c.staleWhileRevalidate, d.staleWhileRevalidate),
    lockTimeout: durationOr(c.lockTimeout, d.lockTimeout),
    key: Array.isArray(c.key) ? c.key.filter((k): k is string => typeof k === 'string').map((k) => k.toLowerCase()) : [...d.key],
  };
  const redis = cacheRedis(c.redis);
  if (redis !== undefined) out.redis = redis;
  if (out.maxSize === 0) problems.push({ path: joinPath(path, 'maxSize'), message: 'must be more than 0 — write `cache: false` to turn the cache off' });
  if (out.maxEntrySize > out.maxSize) problems.push({ path: joinPath(path, 'maxEntrySize'), message: `${formatSize(out.maxEntrySize)} is larger than maxSize (${formatSize(out.maxSize)}) — no such response could be kept` });
  return out;
}

function cacheRedis(raw: unknown): CacheConfig['redis'] {
  const d = DEFAULTS.cacheRedis;
  if (typeof raw === 'string') return { url: raw, keyPrefix: d.keyPrefix, timeout: d.timeout };
  if (!isObject(raw) || typeof raw.url !== 'string') return undefined;
  return { url: raw.url, keyPrefix: typeof raw.keyPrefix === 'string' ? raw.keyPrefix : d.keyPrefix, timeout: durationOr(raw.timeout, d.timeout) };
}

function hashOn(raw: unknown): HashOn | undefined {
  if (raw === 'client-ip') return { kind: 'client-ip' };
  if (!isObject(raw)) return undefined;
  if (typeof raw.header === 'string') return { kind: 'header', name: raw.header.toLowerCase() };
  if (typeof raw.cookie === 'string') return { kind: 'cookie', name: raw.cookie };
  return undefined;
}

function routes(raw: unknown, services: Map<string, ServiceConfig>, problems: ConfigProblem[]): RouteConfig[] {
  if (!Array.isArray(raw)) return [];
  const out: RouteConfig[] = [];
  const seen = new Map<string, number>();
  raw.forEach((item: unknown, i) => {
    if (!isObject(item)) return;
    const path = joinPath('routes', i);
    const { prefix, service, host } = item;
    if (typeof prefix !== 'string' || typeof service !== 'string') return;
    if (!prefix.startsWith('/')) problems.push({ path: joinPath(path, 'prefix'), message: `"${prefix}" must start with "/"` });
    else {
      // Requests are matched by their normalized path: a prefix in any other form never matches.
      const normal = normalizePath(prefix);
      if (isPathProblem(normal)) problems.push({ path: joinPath(path, 'prefix'), message: `"${prefix}" is not a valid path: ${normal.problem.replace(/^the (path|request target) /, 'it ')}` });
      else if (normal !== prefix) problems.push({ path: joinPath(path, 'prefix'), message: `"${prefix}" is not in normal form — requests are matched after normalization; write "${normal}"` });
    }
    if (!services.has(service)) {
      const hint = closest(service, services.keys());
      const known = [...services.keys()].join(', ') || 'none';
      problems.push({ path: joinPath(path, 'service'), message: `unknown service "${service}"${hint ? ` — did you mean ${hint}?` : ` (services: ${known})`}` });
    }
    let normHost: string | undefined;
    if (typeof host === 'string') {
      normHost = host.toLowerCase();
      if (!/^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(normHost) && isIP(normHost) === 0) {
        problems.push({ path: joinPath(path, 'host'), message: `"${host}" is not a host name (no port; "*.example.com" matches subdomains)` });
      }
    }
    const key = `${normHost ?? '*'} ${prefix}`;
    const dup = seen.get(key);
    if (dup !== undefined) problems.push({ path, message: `same host and prefix as routes[${dup}] — it could never match` });
    seen.set(key, i);
    const cache = cacheConfig(item.cache, joinPath(path, 'cache'), problems);
    // Unset rather than false: a route without a cache reads as it did before caches existed.
    out.push({ prefix, host: normHost, service, stripPrefix: item.stripPrefix === true, ...(cache === false ? {} : { cache }) });
  });
  return out;
}

function trustedProxies(raw: unknown, problems: ConfigProblem[]): string[] {
  if (!Array.isArray(raw)) return [...DEFAULTS.trustedProxies];
  const out: string[] = [];
  raw.forEach((entry: unknown, i) => {
    if (typeof entry !== 'string') return;
    if (parseCidr(entry) === undefined) {
      problems.push({ path: joinPath('trustedProxies', i), message: `"${entry}" is not an IP address or CIDR range (e.g. 10.0.0.0/8)` });
    } else out.push(entry);
  });
  return out;
}

/** The other gateways' admin addresses: valid, each once, none of them this gateway's own. */
function peers(raw: unknown, admin: HostPort, problems: ConfigProblem[]): HostPort[] {
  if (!Array.isArray(raw)) return [];
  const out: HostPort[] = [];
  raw.forEach((entry: unknown, i) => {
    const path = joinPath('peers', i);
    const hp = address(entry, path, false, problems);
    if (hp === undefined) return;
    if (hp.port === admin.port && hp.host === admin.host) problems.push({ path, message: `${formatHostPort(hp.host, hp.port)} is this gateway's own admin listener — list the other gateways only` });
    else out.push(hp);
  });
  return out;
}

function virtualAddress(raw: unknown, problems: ConfigProblem[]): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const cidr = parseCidr(raw);
  if (cidr === undefined) problems.push({ path: 'virtualAddress', message: `"${raw}" is not an IP address (e.g. 10.0.0.100 or 10.0.0.100/24)` });
  return cidr?.address;
}

/** `10.0.0.0/8` or a bare address; undefined when malformed. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [addr, bits, extra] = text.split('/');
  if (extra !== undefined || addr === undefined) return undefined;
  const v = isIP(addr);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { address: addr, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

/** A BlockList (node:net) holding the trusted proxy ranges, for fast membership checks. */
export function trustedProxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const c = parseCidr(entry);
    if (c) list.addSubnet(c.address, c.prefix, c.family);
  }
  return list;
}

function address(raw: unknown, path: string, allowZero: boolean, problems: ConfigProblem[]): HostPort | undefined {
  if (typeof raw !== 'string') return undefined; // missing or wrong type: the shape check said so
  const hp = parseHostPort(raw, allowZero);
  if (typeof hp === 'string') {
    problems.push({ path, message: `"${raw}" is not a valid address: ${hp}` });
    return undefined;
  }
  return hp;
}

/** `listen`: one address (plaintext), or a list of `{ address, tls? }`. */
function listeners(raw: unknown, problems: ConfigProblem[]): ListenerConfig[] {
  if (typeof raw === 'string') {
    const hp = address(raw, 'listen', true, problems);
    return [{ ...(hp ?? { host: '127.0.0.1', port: 0 }), tls: undefined }];
  }
  if (!Array.isArray(raw)) return [{ host: '127.0.0.1', port: 0, tls: undefined }];
  const out: Array<[number, ListenerConfig]> = [];
  raw.forEach((item: unknown, i) => {
    if (!isObject(item)) return;
    const hp = address(item.address, `listen[${i}].address`, true, problems);
    const tls = isObject(item.tls) ? readTls(item.tls, `listen[${i}].tls`, problems) : undefined;
    if (hp === undefined) return;
    const clash = out.find(([, o]) => o.port !== 0 && o.port === hp.port && hostsOverlap(o.host, hp.host));
    if (clash) problems.push({ path: `listen[${i}].address`, message: `port ${hp.port} is also listen[${clash[0]}]'s — two listeners cannot share a port` });
    out.push([i, { ...hp, tls }]);
  });
  return out.map(([, l]) => l);
}

function hostsOverlap(a: string, b: string): boolean {
  const any = (h: string) => h === '0.0.0.0' || h === '::';
  return a === b || any(a) || any(b);
}

function durationOr(raw: unknown, fallback: number): number {
  return parseDuration(raw) ?? fallback;
}

/** Absent, or a valid duration. */
function durationOk(raw: unknown): boolean {
  return raw === undefined || parseDuration(raw) !== undefined;
}

function sizeOr(raw: unknown, fallback: number): number {
  return parseSize(raw) ?? fallback;
}

function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.path}\u0000${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
