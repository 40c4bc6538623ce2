import { DISCOVERY_DEFAULTS as D } from '../core/defaults/discovery.js';
import { UPSTREAM_DEFAULTS as U } from '../core/defaults/upstream.js';
import { CACHE_DEFAULTS as C } from '../core/defaults/cache.js';

/**
 * The config file's defaults. Those of the gateway itself are written here; a service's and
 * the registry's are the engine's own, taken from their part's defaults module, so a gateway
 * and an Upstream or EmbeddedRegistry built in code without a setting agree.
 * docs/configuration.md documents these values and a test keeps the two in step. Durations are
 * milliseconds, sizes bytes.
 */
export const DEFAULTS = Object.freeze({
  admin: '127.0.0.1:9901',
  trustedProxies: [] as readonly string[],
  drainTimeout: 30_000,
  /** The other gateways' admin addresses: none, a gateway alone. */
  peers: [] as readonly string[],
  /** The shared address keepalived moves between the gateways: none. */
  virtualAddress: undefined as string | undefined,
  limits: Object.freeze({
    /** Total size of a request's header section; larger gets 431. */
    maxHeaderSize: 16 * 1024,
    /**
     * Header lines in one request; more gets 431. Envoy's max_headers_count, Kestrel's
     * MaxRequestHeaderCount and Apache's LimitRequestFields are all 100; browsers send 10–20.
     */
    maxHeaders: 100,
    /** Request body; larger gets 413. nginx defaults to 1 MiB, which breaks uploads; we pick 100 MiB. */
    maxBodySize: 100 * 1024 * 1024,
    /** Time a client has to send the whole header section (slowloris guard); 408 after. */
    headersTimeout: 10_000,
    /** Time a client has to send the whole request, body included; 408 after. */
    requestTimeout: 300_000,
    /**
     * Longest pause between two request body bytes while the body is read; 408 after. Half of
     * nginx's client_body_timeout (60 s): the rate check below catches trickles, this catches
     * a client that stopped.
     */
    bodyTimeout: 30_000,
    /**
     * Least average rate of a request body (bytes/s) once it has been read for
     * minBodyRateGrace; 408 below it. Kestrel's MinRequestBodyDataRate: 240 bytes/s after 5 s.
     */
    minBodyRate: 240,
    minBodyRateGrace: 5_000,
    /** How long an idle client keep-alive connection stays open. */
    keepAliveTimeout: 60_000,
  }),
  log: Object.freeze({ level: 'info' as const, access: 'errors' as const }),
  /** Every service setting's default is the engine's own (core/defaults/upstream.ts). */
  service: Object.freeze({
    protocol: U.protocol,
    grpc: U.grpc,
    balancer: U.balancer,
    connectTimeout: U.connectTimeout,
    timeout: U.timeout,
    maxConnections: U.maxConnections,
    concurrencyLimit: U.concurrencyLimit,
    keepAliveTimeout: U.keepAliveTimeout,
    weight: U.weight,
    maxResponseHeaderSize: U.maxResponseHeaderSize,
    healthCheck: U.healthCheck,
    outlier: Object.freeze({
      consecutiveFailures: U.outlier.consecutiveFailures,
      baseEjectionTime: U.outlier.baseEjectionTime,
      maxEjectionTime: U.outlier.maxEjectionTime,
      maxEjectedShare: U.outlier.maxEjectedShare,
    }),
    panicThreshold: U.panicThreshold,
    retry: Object.freeze({
      attempts: U.retry.attempts,
      perTryTimeout: U.retry.perTryTimeout,
      bodyLimit: U.retry.bodyLimit,
      budget: Object.freeze({ percent: U.retry.budget.percent, minPerSecond: U.retry.budget.minPerSecond }),
    }),
    hedge: U.hedge,
  }),
  route: Object.freeze({ stripPrefix: false, cache: false }),
  /** A route's `cache` when it says `true` or leaves a key out: the cache's own defaults (core/defaults/cache.ts). */
  cache: Object.freeze({
    maxSize: C.maxSize,
    maxEntrySize: C.maxEntrySize,
    staleIfError: C.staleIfError,
    staleWhileRevalidate: C.staleWhileRevalidate,
    lockTimeout: C.lockTimeout,
    key: C.key,
  }),
  /** A TLS listener's settings (docs/security.md#tls). */
  tls: Object.freeze({
    /** TLS 1.0 and 1.1 are refused: both are deprecated (RFC 8996). */
    minVersion: 'TLSv1.2' as 'TLSv1.2' | 'TLSv1.3',
  }),
  /** The embedded registry on the admin listener (docs/registry.md); its limits are discovery's own (core/defaults/discovery.ts). */
  registry: Object.freeze({
    /**
     * The admin listener's secret (registry writes and reads, /admin, the dashboard). Unset:
     * registry.tokenFile, then TANDEM_TOKEN / TANDEM_TOKEN_FILE, then — admin on loopback only —
     * a generated one in a file only this user can read (docs/security.md).
     */
    token: undefined as string | undefined,
    /** A file holding the secret (read at start and on reload). */
    tokenFile: undefined as string | undefined,
    /** Lease time to live when an instance asks for none. */
    ttl: D.ttl,
    maxMetadataSize: D.maxMetadataSize,
    maxInstances: D.maxInstances,
    maxInstancesPerPeer: D.maxInstancesPerPeer,
    /** No etcd: members come from the config and the embedded registry only. */
    etcd: Object.freeze([]) as readonly string[],
    etcdPrefix: D.etcd.prefix,
    etcdUser: undefined as string | undefined,
    /** Unset: TANDEM_ETCD_PASSWORD. */
    etcdPassword: undefined as string | undefined,
    etcdCa: undefined as string | undefined,
    etcdCert: undefined as string | undefined,
    etcdKey: undefined as string | undefined,
  }),
});
