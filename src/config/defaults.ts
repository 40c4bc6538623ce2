/**
 * Every default in one place. docs/configuration.md documents these values and a test keeps
 * the two in step. Durations are milliseconds, sizes bytes.
 */
export const DEFAULTS = Object.freeze({
  admin: '127.0.0.1:9901',
  trustedProxies: [] as readonly string[],
  drainTimeout: 30_000,
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
  service: Object.freeze({
    balancer: 'peak-ewma' as const,
    /** TCP connect to an endpoint. Loopback and LAN connects take well under 1 ms; Linkerd uses 1 s. */
    connectTimeout: 1_000,
    /**
     * Longest wait for an endpoint: from sending the request until the response headers
     * arrive, and between two chunks of the response body (nginx's proxy_read_timeout is one
     * value for both too). Envoy's route timeout is 15 s.
     */
    timeout: 15_000,
    /** Connections per endpoint; requests past it wait for a free connection. */
    maxConnections: 256,
    /**
     * Requests in progress for the service (all endpoints, retries included) past which new
     * ones get 503 at once instead of waiting (Envoy's max_requests default).
     */
    concurrencyLimit: 1024,
    /** Idle pooled connection lifetime. Below Node's server default (5 s) so we close first. */
    keepAliveTimeout: 4_000,
    weight: 1,
    /** Largest response header section accepted from an endpoint. */
    maxResponseHeaderSize: 64 * 1024,
    /**
     * Active checks. A refused connection fails at once, so a dead instance is out after two
     * checks (≈ 1 s); a frozen one after two timeouts (≈ 1.5 s). Well inside the 2 s goal even
     * with no traffic, where HAProxy's `inter 2s fall 3` takes 6–8 s. A 404 passes: backends
     * without a /healthz route are still checked for being up.
     */
    healthCheck: Object.freeze({
      path: '/healthz',
      interval: 500,
      timeout: 500,
      healthyThreshold: 2,
      unhealthyThreshold: 2,
    }),
    /** Passive outlier detection from real traffic; Envoy's defaults except the share (see outlier.ts). */
    outlier: Object.freeze({
      consecutiveFailures: 5,
      baseEjectionTime: 30_000,
      maxEjectionTime: 300_000,
      maxEjectedShare: 0.5,
    }),
    /** Envoy's healthy_panic_threshold: below half eligible, spread over all. */
    panicThreshold: 0.5,
    /** Retries to another endpoint; see resilience/retry-policy.ts for which failures may go again. */
    retry: Object.freeze({
      /** Attempts in total, the first included (Envoy's default policy allows 1 + 1, HAProxy 3). */
      attempts: 3,
      /** Wait for one attempt's response headers; unset = whatever is left of `timeout`. */
      perTryTimeout: undefined as number | undefined,
      /** Request bodies up to this size (by Content-Length) are kept in memory so a retry can send them again (Linkerd: 64 KiB). */
      bodyLimit: 64 * 1024,
      /** Finagle's budget: retries at most 20 % of requests plus 10 per second (over 10 s). */
      budget: Object.freeze({ percent: 20, minPerSecond: 10 }),
    }),
    /**
     * Hedging: a second copy of a slow GET/HEAD/OPTIONS to another endpoint once the first has
     * waited longer than 95 % of the service's recent requests (never sooner than 10 ms). At most
     * ≈ 5 % extra requests, within the retry budget; a frozen or stuck instance then costs a
     * client the service's p95 instead of the whole timeout (see resilience/hedge.ts).
     */
    hedge: Object.freeze({
      percentile: 95,
      minDelay: 10,
      methods: Object.freeze(['GET', 'HEAD', 'OPTIONS']) as readonly string[],
    }),
  }),
  route: Object.freeze({ stripPrefix: false }),
  /** The embedded registry on the admin listener (docs/registry.md). */
  registry: Object.freeze({
    /**
     * The admin listener's secret (registry writes and reads, /admin, the dashboard). Unset:
     * registry.tokenFile, then TANDEM_TOKEN / TANDEM_TOKEN_FILE, then — admin on loopback only —
     * a generated one in a file only this user can read (docs/security.md).
     */
    token: undefined as string | undefined,
    /** A file holding the secret (read at start and on reload). */
    tokenFile: undefined as string | undefined,
    /**
     * Lease time to live when an instance asks for none. Long enough that an event loop busy
     * for several seconds does not look like a crash (Moleculer #891); a crashed process is
     * noticed sooner anyway, when its keep-alive connection closes.
     */
    ttl: 10_000,
    /** JSON size of one instance's metadata. */
    maxMetadataSize: 4096,
    /** Instances in all (memory bound: ~1 KiB each). */
    maxInstances: 50_000,
    /** Instances registered from one IP address. */
    maxInstancesPerPeer: 1_000,
  }),
});
