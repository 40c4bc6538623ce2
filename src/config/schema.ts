import { BALANCER_KINDS } from '../core/balancing.js';

/**
 * The JSON Schema of the gateway config file, as users write it (durations and sizes as
 * strings or numbers). Structure and types are checked here; addresses, units and cross
 * references are checked in validate.ts, where the messages can say more.
 * `tandem schema` prints it for editors.
 */
const duration = {
  type: ['string', 'number'],
  format: 'duration',
  minimum: 0,
  description: 'A duration: "250ms", "2s", "1m", "1h", or a number of milliseconds.',
} as const;

const size = {
  type: ['string', 'integer'],
  format: 'size',
  minimum: 0,
  description: 'A size: "64KiB", "10MiB", "1GiB", "500KB", or a number of bytes.',
} as const;

/** `schema`, or `false` to turn the setting off (like 0). `expected` names what else is accepted, for the error message. */
function orOff<S extends object>(schema: S, expected: string) {
  return { if: { type: 'boolean' }, then: { const: false, description: 'false (or 0) turns it off.', 'x-expected': expected }, else: schema } as const;
}

const address = { type: 'string', description: '"host:port", or "[ipv6]:port".' } as const;

const endpoint = {
  if: { type: 'string' },
  then: address,
  else: {
    type: 'object',
    additionalProperties: false,
    required: ['address'],
    properties: {
      address,
      weight: { type: 'integer', minimum: 1, maximum: 1000, description: 'Relative share of traffic. Default 1.' },
    },
  },
} as const;

const hash = {
  if: { type: 'string' },
  then: { type: 'string', enum: ['client-ip'] },
  else: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    properties: {
      header: { type: 'string', minLength: 1, description: 'Hash on this request header.' },
      cookie: { type: 'string', minLength: 1, description: 'Hash on this cookie.' },
    },
  },
  description: 'consistent-hash key: { header: NAME }, { cookie: NAME } or "client-ip".',
} as const;

const healthCheck = {
  if: { type: 'boolean' },
  then: { const: false, description: 'false turns active health checks off.' },
  else: {
    type: 'object',
    additionalProperties: false,
    properties: {
      path: { type: 'string', minLength: 1, description: 'Path to GET. A 5xx, a timeout or a connection error fails.' },
      interval: duration,
      timeout: duration,
      healthyThreshold: { type: 'integer', minimum: 1, maximum: 100 },
      unhealthyThreshold: { type: 'integer', minimum: 1, maximum: 100 },
    },
  },
  description: 'Active health checks: an object (every key optional) or false.',
} as const;

const share = { type: 'number', minimum: 0, maximum: 1 } as const;

const outlier = {
  type: 'object',
  additionalProperties: false,
  properties: {
    consecutiveFailures: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    baseEjectionTime: duration,
    maxEjectionTime: duration,
    maxEjectedShare: share,
  },
  description: 'Passive outlier detection from real traffic.',
} as const;

const retry = {
  if: { type: 'boolean' },
  then: { const: false, description: 'false turns retries off.' },
  else: {
    type: 'object',
    additionalProperties: false,
    properties: {
      attempts: { type: 'integer', minimum: 1, maximum: 10, description: 'Attempts in total, the first included.' },
      perTryTimeout: duration,
      bodyLimit: size,
      budget: {
        type: 'object',
        additionalProperties: false,
        properties: {
          percent: { type: 'number', minimum: 0, maximum: 1000, description: 'Retries allowed as a percentage of requests.' },
          minPerSecond: { type: 'number', minimum: 0, maximum: 1_000_000, description: 'Retries allowed per second on top.' },
        },
      },
    },
  },
  description: 'Retries to another endpoint: an object (every key optional) or false.',
} as const;

const hedge = {
  if: { type: 'boolean' },
  then: { const: false, description: 'false turns hedging off.' },
  else: {
    type: 'object',
    additionalProperties: false,
    properties: {
      percentile: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 100, description: 'Hedge once a request has waited longer than this percentile of recent requests.' },
      minDelay: duration,
      methods: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true, description: 'Methods that hedge; idempotent ones only.' },
    },
  },
  description: 'Hedged requests: an object (every key optional) or false.',
} as const;

const service = {
  type: 'object',
  additionalProperties: false,
  properties: {
    endpoints: { type: 'array', minItems: 1, items: endpoint, description: 'Instances of the service written here; without them the service takes its members from the registry (both may mix).' },
    balancer: { type: 'string', enum: [...BALANCER_KINDS] },
    hash,
    connectTimeout: duration,
    timeout: duration,
    maxConnections: { type: 'integer', minimum: 1, maximum: 100_000 },
    concurrencyLimit: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    keepAliveTimeout: duration,
    maxResponseHeaderSize: size,
    healthCheck,
    outlier,
    panicThreshold: share,
    retry,
    hedge,
  },
} as const;

const route = {
  type: 'object',
  additionalProperties: false,
  required: ['prefix', 'service'],
  properties: {
    prefix: { type: 'string', minLength: 1 },
    host: { type: 'string', minLength: 1 },
    service: { type: 'string', minLength: 1 },
    stripPrefix: { type: 'boolean' },
  },
} as const;

export const CONFIG_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'tandem gateway configuration',
  type: 'object',
  additionalProperties: false,
  required: ['listen', 'services', 'routes'],
  properties: {
    listen: address,
    admin: address,
    trustedProxies: { type: 'array', items: { type: 'string' } },
    drainTimeout: duration,
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxHeaderSize: size,
        maxHeaders: { type: 'integer', minimum: 1, maximum: 10_000, description: 'Header lines allowed in one request.' },
        maxBodySize: size,
        headersTimeout: duration,
        requestTimeout: duration,
        bodyTimeout: orOff(duration, 'a duration'),
        minBodyRate: orOff({ ...size, description: 'Bytes per second: a size ("1KiB") or a number of bytes.' }, 'a rate in bytes per second'),
        minBodyRateGrace: duration,
        keepAliveTimeout: duration,
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      properties: {
        level: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
        access: { type: 'string', enum: ['off', 'errors', 'all'] },
      },
    },
    services: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' },
      additionalProperties: service,
    },
    routes: { type: 'array', minItems: 1, items: route },
    registry: {
      type: 'object',
      additionalProperties: false,
      properties: {
        token: { type: 'string', minLength: 16, maxLength: 1024, description: 'The admin listener\'s secret: a bearer token every registry request, /admin and the dashboard need (at least 16 characters).' },
        tokenFile: { type: 'string', minLength: 1, description: 'A file holding the secret instead (read at start and on reload).' },
        ttl: duration,
        maxMetadataSize: size,
        maxInstances: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        maxInstancesPerPeer: { type: 'integer', minimum: 1, maximum: 1_000_000 },
      },
      description: 'The embedded registry served on the admin listener.',
    },
  },
} as const;
