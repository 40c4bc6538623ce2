import { Registry, collectDefaultMetrics } from 'prom-client';
import { LatencyHistogram } from '../core/histogram.js';
import { STATUS_CLASSES } from '../core/status-class.js';

/**
 * Every tandem metric is declared here — gateway, node SDK, service client and events — with
 * its name, help, type and labels (docs/metrics.md lists the same, a test keeps them in step).
 * The code that emits only bumps plain numbers (on endpoints, services, an instance, a topic);
 * the definitions below read them when Prometheus scrapes, so a request pays nothing for label
 * lookups. Names follow Prometheus conventions: base units in the name, `_total` for counters,
 * labels from bounded sets (services, endpoints, topics, fixed enums — never paths or ids).
 */

type Labels = Record<string, string | number>;
interface Sample { labels: Labels; value: number; metricName?: string }
type MetricType = 'counter' | 'gauge' | 'histogram';
/** The part of tandem that emits a metric, and so the /metrics endpoint that exports it. */
export type MetricEmitter = 'gateway' | 'node' | 'client' | 'events';

export interface MetricSpec {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** Label names (histograms add `le`). */
  readonly labels: readonly string[];
  readonly emitter: MetricEmitter;
}

const spec = (emitter: MetricEmitter, type: MetricType, name: string, labels: readonly string[], help: string): MetricSpec =>
  Object.freeze({ name, help, type, labels: Object.freeze([...labels]), emitter });

/** The catalog. */
export const METRICS = Object.freeze({
  // gateway (the admin listener's /metrics)
  requests: spec('gateway', 'counter', 'tandem_requests_total', ['service', 'endpoint', 'code_class'], 'Requests answered, by service, endpoint and status class ("error" = no response from the endpoint; endpoint "none" = answered by the gateway).'),
  requestDuration: spec('gateway', 'histogram', 'tandem_request_duration_seconds', ['service'], 'Time from receiving a request to the end of its response, by service.'),
  inflight: spec('gateway', 'gauge', 'tandem_requests_in_flight', ['service', 'endpoint'], 'Requests sent to an endpoint and not finished, by service and endpoint.'),
  gatewayInflight: spec('gateway', 'gauge', 'tandem_gateway_requests_in_flight', [], 'Client requests the gateway is handling.'),
  connections: spec('gateway', 'gauge', 'tandem_upstream_connections', ['service', 'endpoint'], 'Open connections to an endpoint, by service and endpoint.'),
  latencyEstimate: spec('gateway', 'gauge', 'tandem_endpoint_latency_estimate_seconds', ['service', 'endpoint'], 'Moving average of latency the peak-EWMA balancer starts from, by service and endpoint.'),
  endpointResponse: spec('gateway', 'histogram', 'tandem_endpoint_response_seconds', ['service', 'endpoint'], 'Time from sending a request to an endpoint until its response headers arrive, by service and endpoint.'),
  state: spec('gateway', 'gauge', 'tandem_endpoint_state', ['service', 'endpoint', 'state'], 'Health state of an endpoint: 1 for its current state, 0 for the others.'),
  transitions: spec('gateway', 'counter', 'tandem_endpoint_transitions_total', ['service', 'endpoint', 'to'], 'Health state changes of an endpoint, by the state entered.'),
  ejections: spec('gateway', 'counter', 'tandem_outlier_ejections_total', ['service'], 'Endpoints taken out of rotation by passive outlier detection, by service.'),
  panic: spec('gateway', 'gauge', 'tandem_service_panic', ['service'], '1 while a service is in panic: too few endpoints eligible, traffic spread over all.'),
  grpcCalls: spec('gateway', 'counter', 'tandem_grpc_calls_total', ['service', 'method', 'status'], 'gRPC calls through the gateway (services with protocol: grpc), by service, full method name (/pkg.Service/Method; past 200 methods per service the rest count as other) and gRPC status code (none: the call ended without one).'),
  retries: spec('gateway', 'counter', 'tandem_retries_total', ['service', 'reason'], 'Retries sent to another endpoint, by service and the failure that caused them.'),
  active: spec('gateway', 'gauge', 'tandem_service_requests_active', ['service'], 'Requests in progress for a service (retries included), the figure concurrencyLimit caps.'),
  rejected: spec('gateway', 'counter', 'tandem_requests_rejected_total', ['service', 'reason'], 'Requests refused at once with 503, by service and reason.'),
  budgetExhausted: spec('gateway', 'counter', 'tandem_retry_budget_exhausted_total', ['service'], 'Retries and hedges not sent because the retry budget was spent, by service.'),
  hedges: spec('gateway', 'counter', 'tandem_hedges_total', ['service'], 'Hedged requests: second attempts sent to another endpoint because the first was slower than the hedge delay, by service.'),
  hedgeWins: spec('gateway', 'counter', 'tandem_hedge_wins_total', ['service'], 'Hedges that answered before the attempt they doubled, by service.'),
  registryInstances: spec('gateway', 'gauge', 'tandem_registry_instances', ['service', 'state'], 'Instances registered in the embedded registry, by service and state (ready, draining).'),
  registryChanges: spec('gateway', 'counter', 'tandem_registry_changes_total', ['kind'], 'Changes the embedded registry made, by kind (registered, state, deregistered, expired).'),
  gatewayReady: spec('gateway', 'gauge', 'tandem_gateway_ready', ['gateway'], 'This gateway and each of its peers (config peers), by admin address: 1 when its /readyz answered 200 at the last poll, 0 when it answered 503 or not at all.'),
  gatewayHoldsAddress: spec('gateway', 'gauge', 'tandem_gateway_holds_address', ['gateway'], '1 for the gateway that holds the virtual address (config virtualAddress), 0 for the others; absent while unknown.'),
  gatewayInfo: spec('gateway', 'gauge', 'tandem_gateway_info', ['version'], 'Always 1; the version label says which tandem the gateway runs.'),
  cacheHits: spec('gateway', 'counter', 'tandem_cache_hits_total', ['route'], 'Requests answered from a fresh cache entry, by route (host and prefix).'),
  cacheMisses: spec('gateway', 'counter', 'tandem_cache_misses_total', ['route'], 'Requests a route\'s cache sent to the origin: no entry, or one to revalidate.'),
  cacheRevalidated: spec('gateway', 'counter', 'tandem_cache_revalidated_total', ['route'], 'Entries the origin confirmed with 304 and the cache then served, by route.'),
  cacheStale: spec('gateway', 'counter', 'tandem_cache_stale_total', ['route', 'reason'], 'Stale entries served, by route and reason (updating = refreshed in the background; status, no-endpoint, overloaded, timeout, error = the origin failed).'),
  cacheCoalesced: spec('gateway', 'counter', 'tandem_cache_coalesced_total', ['route'], 'Requests that waited for another request for the same key instead of going to the origin, by route.'),
  cacheEvictions: spec('gateway', 'counter', 'tandem_cache_evictions_total', ['route'], 'Entries dropped to keep a route\'s cache within maxSize.'),
  cacheBytes: spec('gateway', 'gauge', 'tandem_cache_bytes', ['route'], 'Bytes a route\'s cache holds (bodies, headers, a fixed overhead per entry).'),
  cacheEntries: spec('gateway', 'gauge', 'tandem_cache_entries', ['route'], 'Keys a route\'s cache holds.'),
  cacheRedisHits: spec('gateway', 'counter', 'tandem_cache_redis_hits_total', ['route'], 'Requests answered from the Redis level (another gateway\'s fill) without the origin, by route.'),
  cacheRedisWaits: spec('gateway', 'counter', 'tandem_cache_redis_waits_total', ['route'], 'Requests that waited for another gateway\'s fill of their key (its Redis lock), by route.'),
  cacheRedisErrors: spec('gateway', 'counter', 'tandem_cache_redis_errors_total', ['route'], 'Redis commands of a route\'s cache that failed or timed out.'),
  cacheRedisFallbacks: spec('gateway', 'counter', 'tandem_cache_redis_fallbacks_total', ['route'], 'Requests that went on with the local level alone because Redis was unavailable (down, or its circuit open), by route.'),
  // node SDK (served by tandem/node at the instance's /metrics)
  nodeRequests: spec('node', 'counter', 'tandem_node_requests_total', ['service', 'code_class'], 'Requests an instance answered, by service and status class (health checks excluded).'),
  nodeDuration: spec('node', 'histogram', 'tandem_node_request_duration_seconds', ['service'], 'Time an instance took to answer a request, by service.'),
  nodeInflight: spec('node', 'gauge', 'tandem_node_requests_in_flight', ['service'], 'Requests an instance is handling.'),
  nodeState: spec('node', 'gauge', 'tandem_node_state', ['service', 'state'], 'Lifecycle of an instance: 1 for its current state (starting, ready, draining, closed), 0 for the others.'),
  // service client (tandem/client, same /metrics as the node SDK)
  clientRequests: spec('client', 'counter', 'tandem_client_requests_total', ['service', 'endpoint', 'code_class'], 'Calls made through tandem/client, by called service, endpoint and status class ("error" = no response).'),
  clientDuration: spec('client', 'histogram', 'tandem_client_request_duration_seconds', ['service'], 'Time a tandem/client call took until its whole response was read, by called service.'),
  clientInflight: spec('client', 'gauge', 'tandem_client_requests_in_flight', ['service', 'endpoint'], 'Calls sent to an endpoint and not finished, by called service and endpoint.'),
  clientState: spec('client', 'gauge', 'tandem_client_endpoint_state', ['service', 'endpoint', 'state'], 'Health state of an endpoint as a client sees it: 1 for its current state, 0 for the others.'),
  clientRetries: spec('client', 'counter', 'tandem_client_retries_total', ['service', 'reason'], 'Retries a client sent to another endpoint, by called service and failure.'),
  clientHedges: spec('client', 'counter', 'tandem_client_hedges_total', ['service'], 'Hedged calls: second attempts a client sent to another endpoint because the first was slower than the hedge delay.'),
  clientHedgeWins: spec('client', 'counter', 'tandem_client_hedge_wins_total', ['service'], 'Hedges a client sent that answered before the attempt they doubled.'),
  clientBudgetExhausted: spec('client', 'counter', 'tandem_client_retry_budget_exhausted_total', ['service'], 'Retries and hedges a client did not send because the retry budget was spent.'),
  clientGrpcCalls: spec('client', 'counter', 'tandem_client_grpc_calls_total', ['service', 'method', 'status'], 'gRPC calls made through createGrpcClient(), by called service, full method name (/pkg.Service/Method) and the gRPC status code the caller got.'),
  // events (the names tandem/events uses; emitted through eventCounters(), same /metrics as the node SDK)
  eventsPublished: spec('events', 'counter', 'tandem_events_published_total', ['topic'], 'Events published and confirmed by the broker, by topic.'),
  eventsDelivered: spec('events', 'counter', 'tandem_events_delivered_total', ['topic', 'group'], 'Deliveries handed to a handler of a consumer group (retries and redeliveries included).'),
  eventsAcked: spec('events', 'counter', 'tandem_events_acked_total', ['topic', 'group'], 'Events acknowledged after their handler succeeded (or the inbox found them already handled).'),
  eventsRetried: spec('events', 'counter', 'tandem_events_retried_total', ['topic', 'group'], 'Failed handler attempts scheduled for a retry with backoff.'),
  eventsDeadLettered: spec('events', 'counter', 'tandem_events_dead_lettered_total', ['topic', 'group'], 'Events moved to the dead-letter topic.'),
  eventsRedelivered: spec('events', 'counter', 'tandem_events_redelivered_total', ['topic', 'group'], 'Deliveries the broker marked as redelivered (a consumer died or did not ack in time).'),
  eventsLag: spec('events', 'gauge', 'tandem_events_consumer_lag', ['topic', 'group'], 'Events waiting for the consumer group, as the broker reports it.'),
  eventsInflight: spec('events', 'gauge', 'tandem_events_in_flight', ['topic', 'group'], 'Handlers of the consumer group running now.'),
});

/** Every declared metric, in catalog order. */
export const METRIC_SPECS: readonly MetricSpec[] = Object.values(METRICS);

/** A metric whose samples are computed at scrape time, registered into a prom-client Registry. */
class PulledMetric {
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  constructor(spec: MetricSpec, private readonly collect: () => Sample[]) {
    this.name = spec.name;
    this.help = spec.help;
    this.type = spec.type;
  }

  get(): { name: string; help: string; type: MetricType; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.collect(), aggregator: this.aggregator };
  }
}

/** What the metrics read of one endpoint (the upstream engine's Endpoint has these fields). */
export interface EndpointStats {
  readonly id: string;
  /** Answers by status class index (STATUS_CLASSES). */
  readonly responses: ArrayLike<number>;
  /** Entries into each health state, indexed as ServiceStats.stateKinds. */
  readonly transitions: ArrayLike<number>;
  readonly health: { readonly state: { readonly kind: string } };
  readonly inflight: number;
  readonly connections: number;
  readonly ewmaMs: number;
  readonly latency: LatencyHistogram;
}

/** What the metrics read from the gateway: one entry per service. */
export interface ServiceStats {
  name: string;
  endpoints: readonly EndpointStats[];
  /** Every health state an endpoint can be in, in the order `transitions` counts them. */
  stateKinds: readonly string[];
  /** Retry reasons, in the order `retries` counts them. */
  retryReasons: readonly string[];
  /** Requests answered by the gateway itself (no endpoint reached), by status class index. */
  localResponses: readonly number[];
  latency: LatencyHistogram;
  /** Outlier ejections so far. */
  ejections: number;
  /** Traffic is spread over every endpoint because too few are eligible. */
  panic: boolean;
  /** Retries sent, indexed as retryReasons. */
  retries: readonly number[];
  /** Hedges sent, and hedges that answered before the attempt they doubled. */
  hedges: number;
  hedgeWins: number;
  /** Retries and hedges the budget refused. */
  budgetExhausted: number;
  /** Requests in progress now, and requests refused at the concurrency limit so far. */
  active: number;
  overloaded: number;
  /** gRPC calls by method: counts indexed by status code 0–16, then one for "none". */
  grpcCalls?: ReadonlyMap<string, readonly number[]>;
}

/** What the metrics read of one route's response cache. */
export interface CacheStatsView {
  /** The route: its host (if any) and prefix. */
  route: string;
  hits: number;
  misses: number;
  revalidated: number;
  /** Stale entries served, indexed as `staleReasons`. */
  stale: readonly number[];
  staleReasons: readonly string[];
  coalesced: number;
  evictions: number;
  bytes: number;
  entries: number;
  /** The Redis second level, when the route has one. */
  redis?: { hits: number; waits: number; errors: number; fallbacks: number };
}

export interface GatewayStats {
  services(): Iterable<ServiceStats>;
  /** Routes with a cache. */
  caches?(): Iterable<CacheStatsView>;
  /** Requests that matched no route, by status class index. */
  unrouted: readonly number[];
  inflight(): number;
  /** Registered instances by service and state. */
  registered?(): Iterable<{ service: string; state: string; count: number }>;
  /** Changes the embedded registry made so far, by kind. */
  registryChanges?(): Record<string, number>;
  /** This gateway and its peers: ready, and holding the virtual address (null: unknown). */
  gateways?(): Iterable<{ address: string; ready: boolean | null; holdsAddress: boolean | null }>;
  version?: string;
}

export function createGatewayRegistry(stats: GatewayStats): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const M = METRICS;
  const metrics = [
    new PulledMetric(M.requests, () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (const e of s.endpoints) pushClasses(out, { service: s.name, endpoint: e.id }, e.responses);
        pushClasses(out, { service: s.name, endpoint: 'none' }, s.localResponses);
      }
      pushClasses(out, { service: 'none', endpoint: 'none' }, stats.unrouted);
      return out;
    }),
    new PulledMetric(M.requestDuration, () => {
      const out: Sample[] = [];
      for (const s of stats.services()) pushHistogram(out, M.requestDuration.name, { service: s.name }, s.latency);
      return out;
    }),
    new PulledMetric(M.inflight, () => perEndpoint(stats.services(), (e) => e.inflight)),
    new PulledMetric(M.gatewayInflight, () => [{ labels: {}, value: stats.inflight() }]),
    new PulledMetric(M.connections, () => perEndpoint(stats.services(), (e) => e.connections)),
    new PulledMetric(M.latencyEstimate, () => perEndpoint(stats.services(), (e) => e.ewmaMs / 1000)),
    new PulledMetric(M.endpointResponse, () => {
      const out: Sample[] = [];
      for (const s of stats.services()) for (const e of s.endpoints) pushHistogram(out, M.endpointResponse.name, { service: s.name, endpoint: e.id }, e.latency);
      return out;
    }),
    new PulledMetric(M.state, () => endpointStates(stats.services())),
    new PulledMetric(M.transitions, () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (const e of s.endpoints) {
          for (let i = 0; i < s.stateKinds.length; i++) {
            const value = e.transitions[i]!;
            if (value > 0) out.push({ labels: { service: s.name, endpoint: e.id, to: s.stateKinds[i]! }, value });
          }
        }
      }
      return out;
    }),
    new PulledMetric(M.ejections, () => perService(stats.services(), (s) => s.ejections)),
    new PulledMetric(M.panic, () => perService(stats.services(), (s) => (s.panic ? 1 : 0))),
    new PulledMetric(M.retries, () => retriesOf(stats.services())),
    new PulledMetric(M.grpcCalls, () => grpcCallsOf(stats.services())),
    new PulledMetric(M.active, () => perService(stats.services(), (s) => s.active)),
    new PulledMetric(M.rejected, () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name, reason: 'concurrency-limit' }, value: s.overloaded }))),
    new PulledMetric(M.budgetExhausted, () => perService(stats.services(), (s) => s.budgetExhausted)),
    new PulledMetric(M.hedges, () => perService(stats.services(), (s) => s.hedges)),
    new PulledMetric(M.hedgeWins, () => perService(stats.services(), (s) => s.hedgeWins)),
    new PulledMetric(M.registryInstances, () =>
      [...(stats.registered?.() ?? [])].map((r) => ({ labels: { service: r.service, state: r.state }, value: r.count }))),
    new PulledMetric(M.registryChanges, () =>
      Object.entries(stats.registryChanges?.() ?? {}).map(([kind, value]) => ({ labels: { kind }, value }))),
    new PulledMetric(M.gatewayReady, () =>
      [...(stats.gateways?.() ?? [])].map((g) => ({ labels: { gateway: g.address }, value: g.ready === true ? 1 : 0 }))),
    new PulledMetric(M.gatewayHoldsAddress, () =>
      [...(stats.gateways?.() ?? [])].filter((g) => g.holdsAddress !== null).map((g) => ({ labels: { gateway: g.address }, value: g.holdsAddress ? 1 : 0 }))),
    new PulledMetric(M.gatewayInfo, () => [{ labels: { version: stats.version ?? 'unknown' }, value: 1 }]),
    ...cacheMetrics(() => stats.caches?.() ?? []),
  ];
  for (const m of metrics) registry.registerMetric(m as never);
  return registry;
}

/** Only routes whose cache has a Redis level get these series. */
function redisMetrics(caches: () => Iterable<CacheStatsView>): PulledMetric[] {
  const per = (spec: MetricSpec, value: (r: NonNullable<CacheStatsView['redis']>) => number) =>
    new PulledMetric(spec, () => [...caches()].flatMap((c) => (c.redis === undefined ? [] : [{ labels: { route: c.route }, value: value(c.redis) }])));
  return [per(METRICS.cacheRedisHits, (r) => r.hits), per(METRICS.cacheRedisWaits, (r) => r.waits), per(METRICS.cacheRedisErrors, (r) => r.errors), per(METRICS.cacheRedisFallbacks, (r) => r.fallbacks)];
}

function cacheMetrics(caches: () => Iterable<CacheStatsView>): PulledMetric[] {
  const M = METRICS;
  const per = (spec: MetricSpec, value: (c: CacheStatsView) => number) =>
    new PulledMetric(spec, () => [...caches()].map((c) => ({ labels: { route: c.route }, value: value(c) })));
  return [
    per(M.cacheHits, (c) => c.hits),
    per(M.cacheMisses, (c) => c.misses),
    per(M.cacheRevalidated, (c) => c.revalidated),
    new PulledMetric(M.cacheStale, () => {
      const out: Sample[] = [];
      for (const c of caches()) c.staleReasons.forEach((reason, i) => out.push({ labels: { route: c.route, reason }, value: c.stale[i] ?? 0 }));
      return out;
    }),
    per(M.cacheCoalesced, (c) => c.coalesced),
    per(M.cacheEvictions, (c) => c.evictions),
    per(M.cacheBytes, (c) => c.bytes),
    per(M.cacheEntries, (c) => c.entries),
    ...redisMetrics(caches),
  ];
}

/** What the node SDK counts for one served instance (plain numbers, bumped per request). */
export interface NodeStats {
  readonly service: string;
  /** Answered requests by status class index (STATUS_CLASSES). */
  readonly responses: number[];
  readonly latency: LatencyHistogram;
  inflight: number;
  state: string;
}

/** The node SDK's lifecycle states, for tandem_node_state. */
export const NODE_STATES = ['starting', 'ready', 'draining', 'closed'] as const;

/** Per topic (and consumer group) event counters; tandem/events bumps the fields. */
export interface EventCounters {
  readonly topic: string;
  /** '' for a publisher's counters. */
  readonly group: string;
  published: number;
  delivered: number;
  acked: number;
  retried: number;
  deadLettered: number;
  redelivered: number;
  /** Gauges, set by the events code (lag as the broker last reported it). */
  lag: number;
  inFlight: number;
}

/**
 * What this process's /metrics reads besides the default process metrics: the instances served
 * with tandem/node, the tandem/client clients (as ServiceStats of their upstream) and the event
 * counters. Emitters add themselves and remove themselves when closed.
 */
export const processStats = {
  nodes: new Set<NodeStats>(),
  clients: new Set<() => ServiceStats>(),
  events: new Map<string, EventCounters>(),
};

/**
 * The counters of one topic (publisher side: no group) or one topic and consumer group; the same
 * object for the same pair, so emitters may look it up once and keep it.
 */
export function eventCounters(topic: string, group = ''): EventCounters {
  const key = `${topic}\u0000${group}`;
  let c = processStats.events.get(key);
  if (c === undefined) {
    c = { topic, group, published: 0, delivered: 0, acked: 0, retried: 0, deadLettered: 0, redelivered: 0, lag: 0, inFlight: 0 };
    processStats.events.set(key, c);
  }
  return c;
}

let processRegistry: Registry | undefined;

/**
 * The registry of a service process (node SDK, clients, events, default process metrics).
 * tandem/node serves it at the instance's /metrics; an application with its own /metrics can
 * merge it (`Registry.merge`) or call `.metrics()`.
 */
export function metricsRegistry(): Registry {
  if (processRegistry !== undefined) return processRegistry;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const M = METRICS;
  const clients = () => [...processStats.clients].map((read) => read());
  const events = () => [...processStats.events.values()];
  const consumers = () => events().filter((c) => c.group !== '');
  const publishers = () => {
    // One sample per topic: publisher counters live under group ''.
    return events().filter((c) => c.group === '');
  };
  const metrics = [
    new PulledMetric(M.nodeRequests, () => {
      const out: Sample[] = [];
      for (const n of processStats.nodes) pushClasses(out, { service: n.service }, n.responses);
      return out;
    }),
    new PulledMetric(M.nodeDuration, () => {
      const out: Sample[] = [];
      for (const n of processStats.nodes) pushHistogram(out, M.nodeDuration.name, { service: n.service }, n.latency);
      return out;
    }),
    new PulledMetric(M.nodeInflight, () => [...processStats.nodes].map((n) => ({ labels: { service: n.service }, value: n.inflight }))),
    new PulledMetric(M.nodeState, () => {
      const out: Sample[] = [];
      for (const n of processStats.nodes) for (const state of NODE_STATES) out.push({ labels: { service: n.service, state }, value: n.state === state ? 1 : 0 });
      return out;
    }),
    new PulledMetric(M.clientRequests, () => {
      const out: Sample[] = [];
      for (const s of clients()) for (const e of s.endpoints) pushClasses(out, { service: s.name, endpoint: e.id }, e.responses);
      for (const s of clients()) pushClasses(out, { service: s.name, endpoint: 'none' }, s.localResponses);
      return out;
    }),
    new PulledMetric(M.clientDuration, () => {
      const out: Sample[] = [];
      for (const s of clients()) pushHistogram(out, M.clientDuration.name, { service: s.name }, s.latency);
      return out;
    }),
    new PulledMetric(M.clientInflight, () => perEndpoint(clients(), (e) => e.inflight)),
    new PulledMetric(M.clientState, () => endpointStates(clients())),
    new PulledMetric(M.clientRetries, () => retriesOf(clients())),
    new PulledMetric(M.clientHedges, () => perService(clients(), (s) => s.hedges)),
    new PulledMetric(M.clientHedgeWins, () => perService(clients(), (s) => s.hedgeWins)),
    new PulledMetric(M.clientBudgetExhausted, () => perService(clients(), (s) => s.budgetExhausted)),
    new PulledMetric(M.clientGrpcCalls, () => grpcCallsOf(clients())),
    new PulledMetric(M.eventsPublished, () => publishers().map((c) => ({ labels: { topic: c.topic }, value: c.published }))),
    new PulledMetric(M.eventsDelivered, () => perGroup(consumers(), (c) => c.delivered)),
    new PulledMetric(M.eventsAcked, () => perGroup(consumers(), (c) => c.acked)),
    new PulledMetric(M.eventsRetried, () => perGroup(consumers(), (c) => c.retried)),
    new PulledMetric(M.eventsDeadLettered, () => perGroup(consumers(), (c) => c.deadLettered)),
    new PulledMetric(M.eventsRedelivered, () => perGroup(consumers(), (c) => c.redelivered)),
    new PulledMetric(M.eventsLag, () => perGroup(consumers(), (c) => c.lag)),
    new PulledMetric(M.eventsInflight, () => perGroup(consumers(), (c) => c.inFlight)),
  ];
  for (const m of metrics) registry.registerMetric(m as never);
  processRegistry = registry;
  return registry;
}

function perGroup(counters: readonly EventCounters[], read: (c: EventCounters) => number): Sample[] {
  return counters.map((c) => ({ labels: { topic: c.topic, group: c.group }, value: read(c) }));
}

function pushHistogram(out: Sample[], name: string, labels: Labels, h: LatencyHistogram): void {
  for (const b of h.cumulative()) out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: b.le }, value: b.value });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
}

function perService(services: Iterable<ServiceStats>, read: (s: ServiceStats) => number): Sample[] {
  return [...services].map((s) => ({ labels: { service: s.name }, value: read(s) }));
}

function endpointStates(services: Iterable<ServiceStats>): Sample[] {
  const out: Sample[] = [];
  for (const s of services) {
    for (const e of s.endpoints) {
      const current = e.health.state.kind;
      for (const state of s.stateKinds) out.push({ labels: { service: s.name, endpoint: e.id, state }, value: state === current ? 1 : 0 });
    }
  }
  return out;
}

function grpcCallsOf(services: Iterable<ServiceStats>): Sample[] {
  const out: Sample[] = [];
  for (const s of services) {
    for (const [method, counts] of s.grpcCalls ?? []) {
      counts.forEach((value, code) => {
        if (value > 0) out.push({ labels: { service: s.name, method, status: code < counts.length - 1 ? String(code) : 'none' }, value });
      });
    }
  }
  return out;
}

function retriesOf(services: Iterable<ServiceStats>): Sample[] {
  const out: Sample[] = [];
  for (const s of services) {
    for (let i = 0; i < s.retryReasons.length; i++) {
      const value = s.retries[i]!;
      if (value > 0) out.push({ labels: { service: s.name, reason: s.retryReasons[i]! }, value });
    }
  }
  return out;
}

function pushClasses(out: Sample[], labels: Labels, counts: ArrayLike<number>): void {
  for (let i = 0; i < STATUS_CLASSES.length; i++) {
    const value = counts[i] ?? 0;
    if (value > 0) out.push({ labels: { ...labels, code_class: STATUS_CLASSES[i]! }, value });
  }
}

function perEndpoint(services: Iterable<ServiceStats>, read: (e: EndpointStats) => number): Sample[] {
  const out: Sample[] = [];
  for (const s of services) for (const e of s.endpoints) out.push({ labels: { service: s.name, endpoint: e.id }, value: read(e) });
  return out;
}
