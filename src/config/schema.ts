import { Type, type Static, type TSchema, type TUnsafe, type SchemaOptions } from '@sinclair/typebox';
import { BALANCER_KINDS } from '../core/balancing.js';

/**
 * The JSON Schema of the gateway config file, as users write it (durations and sizes as
 * strings or numbers), built with TypeBox so the type of that input (`GatewayConfigInput`) is
 * derived from the same object ajv checks and `tandem schema` prints: a key added here is a key
 * the type accepts, and nothing else is. Structure and types are checked here; addresses, units
 * and cross references are checked in validate.ts, where the messages can say more.
 *
 * A few keywords TypeBox has no builder for (if/then/else, a type list with a format, a string
 * enum, propertyNames) are written as plain JSON Schema in `Type.Unsafe`, each with its static
 * type computed from the parts it is made of.
 */

/** A string of one of `values`, as `enum` (not anyOf of constants): ajv then names the allowed values and we can suggest the closest. */
function oneOf<const V extends readonly string[]>(values: V, options: SchemaOptions = {}): TUnsafe<V[number]> {
  return Type.Unsafe<V[number]>({ ...options, type: 'string', enum: [...values] });
}

/**
 * `then` when the value is of JSON type `when`, else `otherwise`. With if/then/else ajv reports
 * only the errors of the branch the value took ("expected an object", not a union's every miss).
 */
function byType<T extends TSchema, E extends TSchema>(when: 'string' | 'boolean', then: T, otherwise: E, options: SchemaOptions = {}): TUnsafe<Static<T> | Static<E>> {
  return Type.Unsafe<Static<T> | Static<E>>({ if: { type: when }, then, else: otherwise, ...options });
}

/** `schema`, or `false` to turn the setting off (like 0). `expected` names what else is accepted, for the error message. */
function orOff<S extends TSchema>(schema: S, expected: string, options: SchemaOptions = {}): TUnsafe<false | Static<S>> {
  return byType('boolean', Type.Literal(false, { description: 'false (or 0) turns it off.', 'x-expected': expected }), schema, options);
}

const duration = Type.Unsafe<string | number>({
  type: ['string', 'number'],
  format: 'duration',
  minimum: 0,
  description: 'A duration: "250ms", "2s", "1m", "1h", or a number of milliseconds.',
});

const SIZE = {
  type: ['string', 'integer'],
  format: 'size',
  minimum: 0,
  description: 'A size: "64KiB", "10MiB", "1GiB", "500KB", or a number of bytes.',
};
const size = Type.Unsafe<string | number>(SIZE);

const address = Type.String({ description: '"host:port", or "[ipv6]:port".' });

const endpoint = byType('string', address, Type.Object({
  address,
  weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Relative share of traffic. Default 1.' })),
}, { additionalProperties: false }));

const hash = byType('string', oneOf(['client-ip'] as const), Type.Object({
  header: Type.Optional(Type.String({ minLength: 1, description: 'Hash on this request header.' })),
  cookie: Type.Optional(Type.String({ minLength: 1, description: 'Hash on this cookie.' })),
}, { additionalProperties: false, minProperties: 1, maxProperties: 1 }), { description: 'consistent-hash key: { header: NAME }, { cookie: NAME } or "client-ip".' });

/** A setting that is an object of optional keys, or false to turn it off (off is no number here). */
function objectOrFalse<S extends TSchema>(settings: S, off: string, description: string): TUnsafe<false | Static<S>> {
  return byType('boolean', Type.Literal(false, { description: off }), settings, { description });
}

const healthCheck = objectOrFalse(Type.Object({
  path: Type.Optional(Type.String({ minLength: 1, description: 'Path to GET. A 5xx, a timeout or a connection error fails.' })),
  interval: Type.Optional(duration),
  timeout: Type.Optional(duration),
  healthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  unhealthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
}, { additionalProperties: false }), 'false turns active health checks off.', 'Active health checks: an object (every key optional) or false.');

const share = Type.Number({ minimum: 0, maximum: 1 });

const outlier = Type.Object({
  consecutiveFailures: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  baseEjectionTime: Type.Optional(duration),
  maxEjectionTime: Type.Optional(duration),
  maxEjectedShare: Type.Optional(share),
}, { additionalProperties: false, description: 'Passive outlier detection from real traffic.' });

const retry = objectOrFalse(Type.Object({
  attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'Attempts in total, the first included.' })),
  perTryTimeout: Type.Optional(duration),
  bodyLimit: Type.Optional(size),
  budget: Type.Optional(Type.Object({
    percent: Type.Optional(Type.Number({ minimum: 0, maximum: 1000, description: 'Retries allowed as a percentage of requests.' })),
    minPerSecond: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000, description: 'Retries allowed per second on top.' })),
  }, { additionalProperties: false })),
}, { additionalProperties: false }), 'false turns retries off.', 'Retries to another endpoint: an object (every key optional) or false.');

const hedge = objectOrFalse(Type.Object({
  percentile: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 100, description: 'Hedge once a request has waited longer than this percentile of recent requests.' })),
  minDelay: Type.Optional(duration),
  methods: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true, description: 'Methods that hedge; idempotent ones only.' })),
}, { additionalProperties: false }), 'false turns hedging off.', 'Hedged requests: an object (every key optional) or false.');

const grpc = Type.Object({
  idempotentMethods: Type.Optional(Type.Array(Type.String({ pattern: '^/[^/]+/[^/]+$' }), { uniqueItems: true, description: 'Full gRPC method names (/pkg.Service/Method) safe to run twice: retried after they may have been processed, and hedged.' })),
  healthService: Type.Optional(Type.String({ description: 'The service name asked in grpc.health.v1.Health/Check; empty = the server as a whole.' })),
}, { additionalProperties: false, description: 'gRPC settings (protocol: grpc).' });

export const SERVICE_SCHEMA = Type.Object({
  protocol: Type.Optional(oneOf(['http', 'grpc'] as const, { description: 'http: HTTP/1.1 to the endpoints; grpc: gRPC over HTTP/2 cleartext.' })),
  grpc: Type.Optional(grpc),
  endpoints: Type.Optional(Type.Array(endpoint, { minItems: 1, description: 'Instances of the service written here; without them the service takes its members from the registry (both may mix).' })),
  balancer: Type.Optional(oneOf(BALANCER_KINDS)),
  hash: Type.Optional(hash),
  connectTimeout: Type.Optional(duration),
  timeout: Type.Optional(duration),
  maxConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  concurrencyLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  keepAliveTimeout: Type.Optional(duration),
  maxResponseHeaderSize: Type.Optional(size),
  healthCheck: Type.Optional(healthCheck),
  outlier: Type.Optional(outlier),
  panicThreshold: Type.Optional(share),
  retry: Type.Optional(retry),
  hedge: Type.Optional(hedge),
}, { additionalProperties: false });

/**
 * Service name → settings. propertyNames + additionalProperties (not TypeBox's Record, which
 * writes patternProperties) so a bad name is one error at the name, not one per key inside it.
 */
const services = Type.Unsafe<Record<string, Static<typeof SERVICE_SCHEMA>>>({
  type: 'object',
  minProperties: 1,
  propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' },
  additionalProperties: SERVICE_SCHEMA,
});

const cache = Type.Object({
  maxSize: Type.Optional(Type.Unsafe<string | number>({ ...SIZE, description: 'Bytes the route\'s cache keeps (bodies and headers); the least recently used entries are dropped first.' })),
  maxEntrySize: Type.Optional(Type.Unsafe<string | number>({ ...SIZE, description: 'A response larger than this is streamed through and not kept.' })),
  staleIfError: Type.Optional(Type.Unsafe<string | number>({ type: ['string', 'number'], format: 'duration', minimum: 0, description: 'How long past its freshness an entry is served when the origin fails, unless the response says (stale-if-error).' })),
  staleWhileRevalidate: Type.Optional(Type.Unsafe<string | number>({ type: ['string', 'number'], format: 'duration', minimum: 0, description: 'How long past its freshness an entry is served while one background request refreshes it, unless the response says (stale-while-revalidate).' })),
  lockTimeout: Type.Optional(Type.Unsafe<string | number>({ type: ['string', 'number'], format: 'duration', minimum: 0, description: 'Longest wait of a request behind another one fetching the same key; then it goes to the origin itself.' })),
  key: Type.Optional(Type.Array(Type.String({ minLength: 1, pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), { uniqueItems: true, description: 'Request headers that are part of the cache key, besides the path with its query.' })),
}, { additionalProperties: false });

const route = Type.Object({
  prefix: Type.String({ minLength: 1 }),
  host: Type.Optional(Type.String({ minLength: 1 })),
  service: Type.String({ minLength: 1 }),
  stripPrefix: Type.Optional(Type.Boolean()),
  cache: Type.Optional(byType('boolean', Type.Boolean({ description: 'true caches with the defaults, false (the default) does not cache.' }), cache, { description: 'A response cache for the route (docs/caching.md): true, false, or an object (every key optional).' })),
}, { additionalProperties: false });

const pemFile = (what: string) => Type.String({ minLength: 1, description: `PEM file of ${what} (a path relative to the gateway's working directory); read at start and on reload.` });

const certificate = Type.Object({
  cert: pemFile('the certificate, its intermediate certificates after it'),
  key: pemFile('the certificate\'s private key'),
}, { additionalProperties: false });

const tls = Type.Object({
  cert: pemFile('the default certificate (served when the client sends no name, or a name no certificate has), its intermediate certificates after it'),
  key: pemFile('the default certificate\'s private key'),
  certificates: Type.Optional(Type.Array(certificate, { minItems: 1, description: 'More certificates: the client\'s SNI name picks the one whose names (subjectAltName, else CN) include it.' })),
  minVersion: Type.Optional(oneOf(['TLSv1.2', 'TLSv1.3'] as const, { description: 'Oldest TLS version accepted.' })),
}, { additionalProperties: false, description: 'TLS on this listener: HTTPS.' });

const listener = Type.Object({
  address,
  tls: Type.Optional(tls),
}, { additionalProperties: false });

export const CONFIG_SCHEMA = Type.Object({
  listen: byType('string', address, Type.Array(listener, { minItems: 1, 'x-expected': 'a "host:port" string or a list of listeners' }), { description: 'The client listener\'s address, or a list of listeners ({ address, tls? }).' }),
  admin: Type.Optional(address),
  trustedProxies: Type.Optional(Type.Array(Type.String())),
  drainTimeout: Type.Optional(duration),
  peers: Type.Optional(Type.Array(address, { uniqueItems: true, description: 'Admin addresses ("host:port") of the other gateways of a pair (or more) behind one address: their /readyz is polled once a second, and /admin/cluster and the dashboard show them.' })),
  virtualAddress: Type.Optional(Type.String({ minLength: 1, description: 'The address clients use, moved between the gateways by keepalived (an IP, a prefix length allowed: "10.0.0.100/24"): /admin/cluster and the dashboard say which gateway holds it.' })),
  limits: Type.Optional(Type.Object({
    maxHeaderSize: Type.Optional(size),
    maxHeaders: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Header lines allowed in one request.' })),
    maxBodySize: Type.Optional(size),
    headersTimeout: Type.Optional(duration),
    requestTimeout: Type.Optional(duration),
    bodyTimeout: Type.Optional(orOff(duration, 'a duration')),
    minBodyRate: Type.Optional(orOff(Type.Unsafe<string | number>({ ...SIZE, description: 'Bytes per second: a size ("1KiB") or a number of bytes.' }), 'a rate in bytes per second')),
    minBodyRateGrace: Type.Optional(duration),
    keepAliveTimeout: Type.Optional(duration),
  }, { additionalProperties: false })),
  log: Type.Optional(Type.Object({
    level: Type.Optional(oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const)),
    access: Type.Optional(oneOf(['off', 'errors', 'all'] as const)),
  }, { additionalProperties: false })),
  services,
  routes: Type.Array(route, { minItems: 1 }),
  registry: Type.Optional(Type.Object({
    token: Type.Optional(Type.String({ minLength: 16, maxLength: 1024, description: 'The admin listener\'s secret: a bearer token every registry request, /admin and the dashboard need (at least 16 characters).' })),
    tokenFile: Type.Optional(Type.String({ minLength: 1, description: 'A file holding the secret instead (read at start and on reload).' })),
    ttl: Type.Optional(duration),
    maxMetadataSize: Type.Optional(size),
    maxInstances: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    maxInstancesPerPeer: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    etcd: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'etcd members (host:port, http:// or https:// URLs): every service without endpoints takes its members from etcd, besides the embedded registry.' })),
    etcdPrefix: Type.Optional(Type.String({ pattern: '^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$', description: 'Key prefix of the instances in etcd: <prefix>/services/<service>/<id>.' })),
    etcdUser: Type.Optional(Type.String({ minLength: 1, description: 'etcd user (etcd auth enabled).' })),
    etcdPassword: Type.Optional(Type.String({ description: 'Password of etcdUser; unset: TANDEM_ETCD_PASSWORD.' })),
    etcdCa: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of the CA that signed the etcd members\' certificates (TLS to etcd).' })),
    etcdCert: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of a client certificate for etcd.' })),
    etcdKey: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of the client certificate\'s key.' })),
  }, { additionalProperties: false, description: 'The embedded registry served on the admin listener, and etcd as a registry.' })),
}, {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'tandem gateway configuration',
  additionalProperties: false,
});

/** What a config file holds, as written (durations and sizes as text or numbers); validateConfig() turns it into a GatewayConfig. */
export type GatewayConfigInput = Static<typeof CONFIG_SCHEMA>;
/** One service's settings as written (also createClient()'s `settings`, with `endpoints`). */
export type ServiceConfigInput = Static<typeof SERVICE_SCHEMA>;
