import type { BalancerKind } from '../core/balancing.js';
import type { HostPort } from '../core/address.js';
import type { GatewayConfigInput } from './schema.js';

/**
 * The types of the config as written (`GatewayConfigInput`, `ServiceConfigInput`) are derived
 * from the schema in schema.ts. The normalized types below (every default applied, durations
 * in ms, sizes in bytes, addresses parsed) are written out, because validate.ts changes the
 * shapes; test/config-types.test.ts fails to compile when a key of the input has no field here
 * or a field here no key in the input.
 */
export type { GatewayConfigInput, ServiceConfigInput } from './schema.js';

type LogInput = NonNullable<GatewayConfigInput['log']>;
export type LogLevel = NonNullable<LogInput['level']>;
export type AccessLogMode = NonNullable<LogInput['access']>;

/** Where a consistent-hash service takes its key from. */
export type HashOn = { kind: 'header'; name: string } | { kind: 'cookie'; name: string } | { kind: 'client-ip' };

export interface EndpointConfig extends HostPort {
  weight: number;
}

export interface ServiceConfig {
  name: string;
  /** What the endpoints speak: HTTP/1.1, or gRPC over HTTP/2 cleartext. */
  protocol: 'http' | 'grpc';
  grpc: GrpcConfig;
  /** The endpoints written in the config (none when the service takes its members from the registry only). */
  endpoints: EndpointConfig[];
  balancer: BalancerKind;
  hash: HashOn | undefined;
  connectTimeout: number;
  timeout: number;
  maxConnections: number;
  concurrencyLimit: number;
  keepAliveTimeout: number;
  maxResponseHeaderSize: number;
  /** Active health checks, or false when turned off. */
  healthCheck: HealthCheckConfig | false;
  outlier: OutlierConfig;
  /** Share of eligible endpoints below which traffic is spread over all (0 = never). */
  panicThreshold: number;
  /** Retries to other endpoints, or false when turned off. */
  retry: RetryConfig | false;
  /** Hedged requests, or false when turned off. Needs retries (hedges draw on their budget). */
  hedge: HedgeConfig | false;
}

export interface GrpcConfig {
  /** Full method names (`/pkg.Service/Method`) retried after they may have been processed, and hedged. */
  idempotentMethods: string[];
  /** The service asked in grpc.health.v1.Health/Check ('' = the whole server). */
  healthService: string;
}

export interface HedgeConfig {
  /** Percentile (0–100, exclusive) of the service's recent latency after which a hedge goes. */
  percentile: number;
  /** Never hedge sooner than this (ms). */
  minDelay: number;
  /** Methods that hedge (idempotent ones only). */
  methods: string[];
}

export interface RetryConfig {
  /** Attempts in total, the first included. */
  attempts: number;
  /** Longest wait for one attempt's response headers (ms); undefined = the time left. */
  perTryTimeout: number | undefined;
  /** Largest request body (bytes, by Content-Length) kept in memory for replay. */
  bodyLimit: number;
  budget: { percent: number; minPerSecond: number };
}

export interface HealthCheckConfig {
  path: string;
  interval: number;
  timeout: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

export interface OutlierConfig {
  consecutiveFailures: number;
  baseEjectionTime: number;
  maxEjectionTime: number;
  maxEjectedShare: number;
}

export interface RouteConfig {
  prefix: string;
  /** Lower-cased host without port; undefined matches any host. */
  host: string | undefined;
  service: string;
  stripPrefix: boolean;
  /** The route's response cache; false or unset = none. */
  cache?: false | CacheConfig;
}

/** A route's response cache (docs/caching.md). Durations ms, sizes bytes. */
export interface CacheConfig {
  maxSize: number;
  maxEntrySize: number;
  staleIfError: number;
  staleWhileRevalidate: number;
  lockTimeout: number;
  /** Lower-case request header names. */
  key: string[];
}

export interface LimitsConfig {
  maxHeaderSize: number;
  maxHeaders: number;
  maxBodySize: number;
  headersTimeout: number;
  requestTimeout: number;
  /** 0 = off. */
  bodyTimeout: number;
  /** Bytes/s; 0 = off. */
  minBodyRate: number;
  minBodyRateGrace: number;
  keepAliveTimeout: number;
}

export interface RegistryConfig {
  token: string | undefined;
  tokenFile: string | undefined;
  ttl: number;
  maxMetadataSize: number;
  maxInstances: number;
  maxInstancesPerPeer: number;
  /** etcd members; empty: no etcd. */
  etcd: string[];
  etcdPrefix: string;
  etcdUser: string | undefined;
  etcdPassword: string | undefined;
  etcdCa: string | undefined;
  etcdCert: string | undefined;
  etcdKey: string | undefined;
}

/** One certificate of a TLS listener, read and checked when the config was validated. */
export interface TlsCertificate {
  /** The files as written in the config (for messages and logs). */
  certFile: string;
  keyFile: string;
  /** PEM contents: the certificate (its chain after it) and its private key. */
  cert: string;
  key: string;
  /** DNS names (wildcards as `*.example.com`) and IP addresses the certificate is for, lower case. */
  names: string[];
}

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** TLS on a listener: the first certificate is the default; SNI picks among all of them by name. */
export interface TlsConfig {
  certificates: TlsCertificate[];
  minVersion: TlsVersion;
}

/** One client listener: an address, plaintext HTTP/1.1 unless it has `tls`. */
export interface ListenerConfig extends HostPort {
  tls: TlsConfig | undefined;
}

/** The validated, normalized gateway configuration: every default applied, units resolved. */
export interface GatewayConfig {
  /** The client listeners, at least one (the config's `listen`: one address, or a list). */
  listen: ListenerConfig[];
  admin: HostPort;
  trustedProxies: string[];
  drainTimeout: number;
  /** The other gateways' admin listeners (docs/configuration.md#top-level). */
  peers: HostPort[];
  /** The address keepalived moves between the gateways (the IP, without a prefix length). */
  virtualAddress: string | undefined;
  limits: LimitsConfig;
  log: { level: LogLevel; access: AccessLogMode };
  services: Map<string, ServiceConfig>;
  routes: RouteConfig[];
  registry: RegistryConfig;
}
