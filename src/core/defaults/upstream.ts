import type { BalancerKind } from '../balancing.js';

/**
 * Every default of upstream/ (one service's endpoints, health, balancing, resilience), written
 * once. It lives in core because two parts read it: the engine, when it is built without a
 * setting (upstream/health/*, upstream/resilience/*), and the config (config/defaults.ts),
 * which neither imports the other. Durations are milliseconds, sizes bytes; percentages are
 * written as the config writes them (20 = 20 %), the engine divides by 100.
 */
export const UPSTREAM_DEFAULTS = Object.freeze({
  balancer: 'peak-ewma' as const satisfies BalancerKind,
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
  /**
   * Idle pooled connection lifetime. Below Node's server default (5 s) so we close first; the
   * health prober's own connection is held no longer either.
   */
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
    /**
     * Consecutive successes that move an endpoint one step up: unhealthy → probation counts
     * passed checks; probation → healthy counts passed checks and successful requests alike.
     * HAProxy's `rise 2`: one lucky answer is not enough, two in a row rarely lie.
     */
    healthyThreshold: 2,
    /**
     * Consecutive failed checks that take a healthy (or ejected) endpoint out. Two, not
     * HAProxy's `fall 3`: with checks every 500 ms an endpoint is out within ≈ 1 s, and one
     * lost probe still does not flap it.
     */
    unhealthyThreshold: 2,
  }),
  /** Passive outlier detection from real traffic: Envoy's defaults except the share. */
  outlier: Object.freeze({
    /** Failures in a row that eject an endpoint. Envoy's consecutive_5xx default. */
    consecutiveFailures: 5,
    /**
     * First ejection length; the n-th ejection lasts n × this (30 s, 60 s, 90 s …). Envoy's
     * base_ejection_time: long enough for a restart, short enough to not waste capacity.
     */
    baseEjectionTime: 30_000,
    /** Cap on the nominal ejection length. Envoy's max_ejection_time. */
    maxEjectionTime: 300_000,
    /**
     * At most this share of the (non-draining) members may be ejected at once; at least one
     * when there are two or more. Envoy's 10 % allows only that one ejection on the 2–6
     * instance fleets tandem is made for; 0.5 matches the panic threshold, so ejections alone
     * never push a service into panic: at least half the members stay eligible.
     */
    maxEjectedShare: 0.5,
    /**
     * Each ejection length is spread ±10 % so endpoints ejected together (a shared dependency
     * failed) do not all come back in the same millisecond. Finagle jitters its dead time too.
     */
    jitter: 0.1,
    /**
     * The ejection count falls by one for each decay period since the endpoint's last ejection
     * ended, so one that misbehaved long ago starts again at 30 s. One step per maximum
     * ejection: an endpoint that was out for 5 minutes has to behave at least that long per
     * step of forgiveness.
     */
    decay: 300_000,
  }),
  /**
   * Panic when eligible members are fewer than this share of the non-draining members: then
   * traffic is spread over the ejected ones too. Envoy's healthy_panic_threshold (50 %);
   * Finagle panics at 50 % unhealthy. 0 disables panic.
   */
  panicThreshold: 0.5,
  /** Retries to another endpoint; see resilience/retry-policy.ts for which failures may go again. */
  retry: Object.freeze({
    /** Attempts in total, the first included (Envoy's default policy allows 1 + 1, HAProxy 3). */
    attempts: 3,
    /** Wait for one attempt's response headers; unset = whatever is left of `timeout`. */
    perTryTimeout: undefined as number | undefined,
    /** Request bodies up to this size (by Content-Length) are kept in memory so a retry can send them again (Linkerd: 64 KiB). */
    bodyLimit: 64 * 1024,
    /**
     * Finagle's budget: retries (and hedges) may add at most 20 % of the requests seen over
     * the last 10 s, plus 10 per second so a quiet service can still retry (a reserve of 100
     * retries per 10 s). Per-request limits multiply under an outage; a budget caps the extra
     * load for the whole service.
     */
    budget: Object.freeze({ percent: 20, minPerSecond: 10, window: 10_000 }),
  }),
  /**
   * Hedging: a second copy of a slow request to another endpoint once the first has waited
   * longer than 95 % of the service's recent requests (Finagle's backup requests, "The Tail at
   * Scale"). At most ≈ 5 % extra requests, within the retry budget; a frozen or stuck instance
   * then costs a client the service's p95 instead of the whole timeout (see resilience/hedge.ts).
   */
  hedge: Object.freeze({
    percentile: 95,
    /**
     * Never hedge sooner than this, whatever the percentile says: on a service answering in
     * 1 ms, a 1 ms hedge would double the load for nothing a client could notice.
     */
    minDelay: 10,
    /**
     * Two copies both run on the server, so only methods that are safe to run twice and cheap
     * to waste. PUT and DELETE are idempotent and may retry after a failure, but are not
     * doubled on a hunch by default.
     */
    methods: Object.freeze(['GET', 'HEAD', 'OPTIONS']) as readonly string[],
  }),
  /**
   * What the endpoints speak: `http` (HTTP/1.1, a keep-alive pool of connections) or `grpc`
   * (HTTP/2 cleartext, many calls multiplexed on a connection, gRPC statuses read from trailers).
   */
  protocol: 'http' as 'http' | 'grpc',
  /** gRPC settings of a `protocol: grpc` service. */
  grpc: Object.freeze({
    /**
     * Full method names (`/pkg.Service/Method`) safe to run twice: retried after they may have
     * been processed (a reset, a timeout, UNAVAILABLE before any response message) and hedged
     * when hedging is on. None by default: a gRPC call is a POST, and nothing says a method is
     * idempotent but its author.
     */
    idempotentMethods: Object.freeze([]) as readonly string[],
    /** The service name asked in grpc.health.v1.Health/Check; '' = the server as a whole. */
    healthService: '',
  }),
  /** The recent latency hedging reads (resilience/latency.ts). */
  latency: Object.freeze({
    /**
     * Samples kept. 1024 leave ≈ 50 samples above the p95, enough for a steady estimate, and
     * sort in microseconds. At high rates they cover well under a second, which suits a
     * hedging delay: it should follow the service as it is now.
     */
    capacity: 1024,
    /** Samples older than this are ignored: 30 s, the window of Finagle's backup-request filter. */
    window: 30_000,
    /** Below this many recent samples a percentile is noise: no answer (and so no hedging). */
    minSamples: 50,
    /** A percentile is recomputed at most this often; answers lag the samples by as much. */
    refresh: 100,
  }),
});
