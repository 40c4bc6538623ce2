import { Registry, collectDefaultMetrics } from 'prom-client';
import type { LatencyHistogram } from './histogram.js';
import { HEALTH_STATE_KINDS, STATUS_CLASSES } from '../upstream/endpoint.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { FAILURE_KINDS } from '../upstream/resilience/retry-policy.js';

/**
 * Every gateway metric is declared here. The request path only bumps plain numbers on
 * endpoints and services; these definitions read them when Prometheus scrapes, so a request
 * pays nothing for label lookups.
 */

type Labels = Record<string, string | number>;
interface Sample { labels: Labels; value: number; metricName?: string }
type MetricType = 'counter' | 'gauge' | 'histogram';

/** A metric whose samples are computed at scrape time, registered into a prom-client Registry. */
class PulledMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly collect: () => Sample[],
  ) {}

  get(): { name: string; help: string; type: MetricType; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.collect(), aggregator: this.aggregator };
  }
}

/** What the metrics read from the gateway: one entry per service. */
export interface ServiceStats {
  name: string;
  endpoints: readonly Endpoint[];
  /** Requests answered by the gateway itself (no endpoint reached), by status class index. */
  localResponses: readonly number[];
  latency: LatencyHistogram;
  /** Outlier ejections so far. */
  ejections: number;
  /** Traffic is spread over every endpoint because too few are eligible. */
  panic: boolean;
  /** Retries sent, indexed as FAILURE_KINDS. */
  retries: readonly number[];
  /** Hedges sent, and hedges that answered before the attempt they doubled. */
  hedges: number;
  hedgeWins: number;
  /** Retries and hedges the budget refused. */
  budgetExhausted: number;
  /** Requests in progress now, and requests refused at the concurrency limit so far. */
  active: number;
  overloaded: number;
}

export interface GatewayStats {
  services(): Iterable<ServiceStats>;
  /** Requests that matched no route, by status class index. */
  unrouted: readonly number[];
  inflight(): number;
  /** The embedded registry: instances per service and state, and changes so far by kind. */
  registry?(): { instances: Array<{ service: string; state: string; count: number }>; changes: Record<string, number> };
}

export function createGatewayRegistry(stats: GatewayStats): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = [
    new PulledMetric('tandem_requests_total', 'Requests answered, by service, endpoint and status class ("error" = no response from the endpoint; endpoint "none" = answered by the gateway).', 'counter', () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (const e of s.endpoints) pushClasses(out, { service: s.name, endpoint: e.id }, e.responses);
        pushClasses(out, { service: s.name, endpoint: 'none' }, s.localResponses);
      }
      pushClasses(out, { service: 'none', endpoint: 'none' }, stats.unrouted);
      return out;
    }),
    new PulledMetric('tandem_request_duration_seconds', 'Time from receiving a request to the end of its response, by service.', 'histogram', () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (const b of s.latency.cumulative()) out.push({ metricName: 'tandem_request_duration_seconds_bucket', labels: { service: s.name, le: b.le }, value: b.value });
        out.push({ metricName: 'tandem_request_duration_seconds_sum', labels: { service: s.name }, value: s.latency.sum });
        out.push({ metricName: 'tandem_request_duration_seconds_count', labels: { service: s.name }, value: s.latency.count });
      }
      return out;
    }),
    new PulledMetric('tandem_requests_in_flight', 'Requests sent to an endpoint and not finished, by service and endpoint.', 'gauge', () =>
      perEndpoint(stats, (e) => e.inflight)),
    new PulledMetric('tandem_gateway_requests_in_flight', 'Client requests the gateway is handling.', 'gauge', () =>
      [{ labels: {}, value: stats.inflight() }]),
    new PulledMetric('tandem_upstream_connections', 'Open connections to an endpoint, by service and endpoint.', 'gauge', () =>
      perEndpoint(stats, (e) => e.connections)),
    new PulledMetric('tandem_endpoint_latency_estimate_seconds', 'Peak-EWMA latency estimate the balancer uses, by service and endpoint.', 'gauge', () =>
      perEndpoint(stats, (e) => e.ewmaMs / 1000)),
    new PulledMetric('tandem_endpoint_state', 'Health state of an endpoint: 1 for its current state, 0 for the others.', 'gauge', () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (const e of s.endpoints) {
          const current = e.health.state.kind;
          for (const state of HEALTH_STATE_KINDS) out.push({ labels: { service: s.name, endpoint: e.id, state }, value: state === current ? 1 : 0 });
        }
      }
      return out;
    }),
    new PulledMetric('tandem_endpoint_transitions_total', 'Health state changes of an endpoint, by the state entered.', 'counter', () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (const e of s.endpoints) {
          for (let i = 0; i < HEALTH_STATE_KINDS.length; i++) {
            const value = e.transitions[i]!;
            if (value > 0) out.push({ labels: { service: s.name, endpoint: e.id, to: HEALTH_STATE_KINDS[i]! }, value });
          }
        }
      }
      return out;
    }),
    new PulledMetric('tandem_outlier_ejections_total', 'Endpoints taken out of rotation by passive outlier detection, by service.', 'counter', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name }, value: s.ejections }))),
    new PulledMetric('tandem_service_panic', '1 while a service is in panic: too few endpoints eligible, traffic spread over all.', 'gauge', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name }, value: s.panic ? 1 : 0 }))),
    new PulledMetric('tandem_retries_total', 'Retries sent to another endpoint, by service and the failure that caused them.', 'counter', () => {
      const out: Sample[] = [];
      for (const s of stats.services()) {
        for (let i = 0; i < FAILURE_KINDS.length; i++) {
          const value = s.retries[i]!;
          if (value > 0) out.push({ labels: { service: s.name, reason: FAILURE_KINDS[i]! }, value });
        }
      }
      return out;
    }),
    new PulledMetric('tandem_service_requests_active', 'Requests in progress for a service (retries included), the figure concurrencyLimit caps.', 'gauge', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name }, value: s.active }))),
    new PulledMetric('tandem_requests_rejected_total', 'Requests refused at once with 503, by service and reason.', 'counter', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name, reason: 'concurrency-limit' }, value: s.overloaded }))),
    new PulledMetric('tandem_retry_budget_exhausted_total', 'Retries and hedges not sent because the retry budget was spent, by service.', 'counter', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name }, value: s.budgetExhausted }))),
    new PulledMetric('tandem_hedges_total', 'Hedged requests: second attempts sent to another endpoint because the first was slower than the hedge delay, by service.', 'counter', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name }, value: s.hedges }))),
    new PulledMetric('tandem_hedge_wins_total', 'Hedges that answered before the attempt they doubled, by service.', 'counter', () =>
      [...stats.services()].map((s) => ({ labels: { service: s.name }, value: s.hedgeWins }))),
    new PulledMetric('tandem_registry_instances', 'Instances in the embedded registry, by service and state (ready, draining).', 'gauge', () =>
      (stats.registry?.().instances ?? []).map((i) => ({ labels: { service: i.service, state: i.state }, value: i.count }))),
    new PulledMetric('tandem_registry_changes_total', 'Changes the embedded registry made, by kind (registered, state, deregistered, expired).', 'counter', () =>
      Object.entries(stats.registry?.().changes ?? {}).map(([kind, value]) => ({ labels: { kind }, value }))),
  ];
  for (const m of metrics) registry.registerMetric(m as never);
  return registry;
}

function pushClasses(out: Sample[], labels: Labels, counts: readonly number[]): void {
  for (let i = 0; i < STATUS_CLASSES.length; i++) {
    const value = counts[i] ?? 0;
    if (value > 0) out.push({ labels: { ...labels, code_class: STATUS_CLASSES[i]! }, value });
  }
}

function perEndpoint(stats: GatewayStats, read: (e: Endpoint) => number): Sample[] {
  const out: Sample[] = [];
  for (const s of stats.services()) for (const e of s.endpoints) out.push({ labels: { service: s.name, endpoint: e.id }, value: read(e) });
  return out;
}
