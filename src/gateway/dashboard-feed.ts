import type { Upstream } from '../upstream/upstream.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { LATENCY_BUCKETS_SECONDS } from '../observe/histogram.js';
import { FAILURE_KINDS } from '../upstream/resilience/retry-policy.js';
import type { LeaveCause } from '../discovery/embedded.js';
import type { GatewayView } from './peer-watch.js';
import type { CacheStatsView } from '../observe/metrics.js';
import { HistoryRing, type HistoryPoint, type ServiceHistory } from './dashboard-history.js';
import { drainingReason, ERROR_RULE, gatewayHealth, serviceReasons, type GatewayHealth, type HealthReason } from './dashboard-health.js';

/**
 * What the dashboard (`/` on the admin listener), `/admin/dashboard` and `tandem status` show:
 * a sample of the cluster once a second — per endpoint request rate, error rate, p99 over the
 * last 10 s, latency estimate, in-flight, state; per service the callers' view and the last
 * minutes of it (dashboard-history.ts); the gateway's health and why (dashboard-health.ts) —
 * and a timeline of recent events (joins, leaves with their cause, ejections and other state
 * changes, retries, budget exhaustion, panic, reloads, drain). Sampling reads the same plain
 * numbers the metrics read; the request path is untouched.
 */

export type TimelineKind = 'join' | 'leave' | 'state' | 'ejection' | 'retry' | 'budget' | 'panic' | 'reload' | 'drain' | 'start' | 'peer' | 'cache';

export interface TimelineEvent {
  seq: number;
  /** ISO time. */
  time: string;
  kind: TimelineKind;
  service?: string;
  endpoint?: string;
  text: string;
  /** Why an instance left (kind `leave`). */
  cause?: LeaveCause;
}

export interface EndpointView {
  id: string;
  state: string;
  /** Requests per second over the last sample interval. */
  rate: number;
  /** Share of the last interval's responses that were 5xx or no response (0..1). */
  errorRate: number;
  /** p99 time to response headers over the last 10 s, ms (null: no requests). */
  p99Ms: number | null;
  latencyEstimateMs: number;
  inflight: number;
  weight: number;
  ejectedUntil?: string;
}

/** An instance that left lately: its last state on the dashboard is why it left. */
export interface Departure {
  /** Its address, as `EndpointView.id`. */
  id: string;
  /** Its instance id in the registry. */
  instance: string;
  cause: LeaveCause;
  /** ISO time. */
  time: string;
}

/**
 * Fields marked optional are always sent by this version; a reader (`tandem status`) may meet
 * a gateway from before they existed.
 */
export interface ServiceView {
  name: string;
  panic: boolean;
  /** Requests per second as callers saw them, over the last sample interval. */
  rate: number;
  /** Share of those that failed (5xx or no answer). */
  errorRate: number;
  /** p99 of the whole request as callers saw it, over the last 10 s, ms. */
  p99Ms: number | null;
  active: number;
  retriesPerSecond: number;
  budgetExhausted: number;
  endpoints: EndpointView[];
  /** The point this sample added to the service's history (/admin/history has the rest). */
  point?: HistoryPoint;
  /** Instances that left in the last DEPARTED_KEEP_MS and have not come back, newest first. */
  departed?: Departure[];
}

/** A route's response cache, counted since the gateway started (or the route's cache was made). */
export interface CacheView {
  route: string;
  hits: number;
  misses: number;
  /** Stale answers, every reason. */
  stale: number;
  /** Hits over hits and misses; null before the first request. */
  hitRatio: number | null;
  entries: number;
  bytes: number;
  /** The Redis level, when the route has one. */
  redis?: { hits: number; errors: number; fallbacks: number };
}

export interface DashboardSnapshot {
  gateway: {
    version: string; pid: number; uptimeSeconds: number; health: GatewayHealth; inflight: number; listen: string; rssBytes: number; rate: number; errorRate: number;
    /** Why the health is not `ok`: the gateway's draining, each service's problems. */
    reasons?: HealthReason[];
  };
  services: ServiceView[];
  /** This gateway, then its peers (config `peers`): ready, holding the virtual address, last answer. */
  gateways?: GatewayView[];
  /** The routes with a response cache. */
  caches?: CacheView[];
  timeline: TimelineEvent[];
  sampledAt: string;
}

export interface FeedSource {
  upstreams(): Iterable<Upstream>;
  /** Registered instances of a service that are draining (no longer members: shown with that state). */
  draining?(service: string): ReadonlyArray<{ address: string; weight: number }>;
  gateway(): { version: string; uptimeSeconds: number; draining: boolean; inflight: number; listen: string };
  gateways?(): GatewayView[];
  caches?(): Iterable<CacheStatsView>;
}

/** Samples kept for the p99 window (one a second). */
const WINDOW = 10;
const TIMELINE_SIZE = 200;
const BUCKET_MS = LATENCY_BUCKETS_SECONDS.map((s) => s * 1000);
/** How long a departed instance stays on the dashboard (its row says why it left). */
export const DEPARTED_KEEP_MS = 120_000;
/** Departures kept per service at most. */
const DEPARTED_MAX = 20;

/** The last WINDOW cumulative snapshots of a latency histogram, for quantiles over recent samples. */
class HistogramWindow {
  /** Ring of cumulative counts, one per sample; empty before the first. */
  private readonly ring: Float64Array[] = [];
  private at = 0;

  /** Pushes the current counts; returns the counts per bucket since the oldest kept and since the previous sample. */
  push(counts: Float64Array): { window: Float64Array; last: Float64Array } {
    const now = Float64Array.from(counts);
    const n = this.ring.length;
    const oldest = n === 0 ? undefined : n < WINDOW ? this.ring[0] : this.ring[this.at];
    const previous = n === 0 ? undefined : n < WINDOW ? this.ring[n - 1] : this.ring[(this.at + WINDOW - 1) % WINDOW];
    if (n < WINDOW) this.ring.push(now);
    else {
      this.ring[this.at] = now;
      this.at = (this.at + 1) % WINDOW;
    }
    const window = new Float64Array(now.length);
    const last = new Float64Array(now.length);
    for (let i = 0; i < now.length; i++) {
      window[i] = now[i]! - (oldest?.[i] ?? 0);
      last[i] = now[i]! - (previous?.[i] ?? 0);
    }
    return { window, last };
  }
}

/** Per-endpoint memory between samples. */
class EndpointTrack {
  responses: number[];
  readonly latency = new HistogramWindow();
  /** Counts start at zero with the endpoint: the first sample sees everything since it was created. */
  constructor(e: Endpoint) {
    this.responses = e.responses.map(() => 0);
  }
}

/** The q-quantile of bucket counts, as the bucket's upper bound in ms (null when empty). */
export function quantileMs(counts: Float64Array, q: number): number | null {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (total <= 0) return null;
  const rank = q * total;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    acc += counts[i]!;
    if (acc >= rank) return BUCKET_MS[i] ?? Infinity;
  }
  return null;
}

interface ServiceTrack {
  retries: number[];
  budgetExhausted: number;
  answered: number[];
  /** The callers' whole-request latency (Upstream.stats.latency). */
  latency: HistogramWindow;
  history: HistoryRing;
}

export class ClusterFeed {
  private readonly endpoints = new WeakMap<Endpoint, EndpointTrack>();
  /** By upstream, not name: a service removed and added again by reloads starts from zero. */
  private readonly services = new WeakMap<Upstream, ServiceTrack>();
  private readonly timeline: TimelineEvent[] = [];
  /** By service name: registry instances come and go by name and address. */
  private readonly departures = new Map<string, Departure[]>();
  private seq = 0;
  private last: DashboardSnapshot | undefined;
  private lastAt = performance.now();
  private readonly listeners = new Set<(message: { type: 'snapshot'; data: DashboardSnapshot } | { type: 'event'; data: TimelineEvent }) => void>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly source: FeedSource, readonly intervalMs = 1000, private readonly onBudgetExhausted?: (service: string, refused: number) => void) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Adds a timeline event and pushes it to every stream at once. */
  record(kind: TimelineKind, text: string, service?: string, endpoint?: string, cause?: LeaveCause): TimelineEvent {
    const event: TimelineEvent = { seq: ++this.seq, time: new Date().toISOString(), kind, text };
    if (service !== undefined) event.service = service;
    if (endpoint !== undefined) event.endpoint = endpoint;
    if (cause !== undefined) event.cause = cause;
    this.timeline.push(event);
    if (this.timeline.length > TIMELINE_SIZE) this.timeline.splice(0, this.timeline.length - TIMELINE_SIZE);
    for (const l of this.listeners) l({ type: 'event', data: event });
    return event;
  }

  /** An instance left the registry: a timeline event saying why, and its row keeps the cause a while. */
  leave(service: string, instance: string, address: string, cause: LeaveCause): void {
    const event = this.record('leave', `${instance} (${address}) left: ${CAUSE_TEXT[cause]}`, service, address, cause);
    const list = (this.departures.get(service) ?? []).filter((d) => d.id !== address);
    list.unshift({ id: address, instance, cause, time: event.time });
    this.departures.set(service, list.slice(0, DEPARTED_MAX));
  }

  /**
   * The last minutes of every service, oldest point first, and the error rule the page draws
   * on the error chart (/admin/history, and a stream's first message).
   */
  history(): { services: ServiceHistory[]; errorRule: typeof ERROR_RULE } {
    const services: ServiceHistory[] = [];
    for (const u of this.source.upstreams()) services.push(this.serviceTrack(u).history.view(u.name, this.intervalMs));
    return { services, errorRule: ERROR_RULE };
  }

  /** The latest sample (taken now if none yet). */
  snapshot(): DashboardSnapshot {
    return this.last ?? this.sample();
  }

  /** Streams: a snapshot every interval and each timeline event as it happens. */
  subscribe(listener: (message: { type: 'snapshot'; data: DashboardSnapshot } | { type: 'event'; data: TimelineEvent }) => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  close(): void {
    clearInterval(this.timer);
    this.listeners.clear();
  }

  /** One sample: rates since the previous one, p99 over the window, retry and budget events. */
  sample(): DashboardSnapshot {
    const now = performance.now();
    const wallNow = Date.now();
    const dt = Math.max(0.001, (now - this.lastAt) / 1000);
    this.lastAt = now;
    const services: ServiceView[] = [];
    const reasons: HealthReason[] = [];
    let gwCount = 0;
    let gwErrors = 0;
    for (const u of this.source.upstreams()) {
      const endpoints: EndpointView[] = [];
      const snap = u.snapshot();
      const states = new Map<string, number>();
      let eligible = 0;
      u.endpoints.forEach((e, i) => {
        states.set(e.health.state.kind, (states.get(e.health.state.kind) ?? 0) + 1);
        if (e.health.eligible) eligible++;
        let track = this.endpoints.get(e);
        if (track === undefined) {
          track = new EndpointTrack(e);
          this.endpoints.set(e, track);
        }
        let count = 0;
        let errors = 0;
        for (let c = 0; c < 6; c++) {
          const d = e.responses[c]! - track.responses[c]!;
          count += d;
          if (c >= 4) errors += d;
        }
        track.responses = [...e.responses];
        const { window } = track.latency.push(e.latency.counts);
        const p99 = quantileMs(window, 0.99);
        const s = snap[i];
        const view: EndpointView = {
          id: e.id,
          state: e.health.state.kind,
          rate: round(count / dt),
          errorRate: count > 0 ? round(errors / count, 3) : 0,
          p99Ms: p99,
          latencyEstimateMs: round(e.ewmaMs),
          inflight: e.inflight,
          weight: e.weight,
        };
        if (s?.ejectedUntil !== undefined) view.ejectedUntil = s.ejectedUntil;
        endpoints.push(view);
      });
      const st = this.serviceTrack(u);
      const retries = u.stats.retries.reduce((a, b) => a + b, 0) - st.retries.reduce((a, b) => a + b, 0);
      this.retryEvents(u, st);
      for (const d of this.source.draining?.(u.name) ?? []) {
        if (endpoints.some((e) => e.id === d.address)) continue;
        endpoints.push({ id: d.address, state: 'draining', rate: 0, errorRate: 0, p99Ms: null, latencyEstimateMs: 0, inflight: 0, weight: d.weight });
        states.set('draining', (states.get('draining') ?? 0) + 1);
      }
      // The service's numbers are the callers' view: a request retried to success is one success.
      let sCount = 0;
      let sErrors = 0;
      for (let c = 0; c < 6; c++) {
        const d = u.stats.answered[c]! - st.answered[c]!;
        sCount += d;
        if (c >= 4) sErrors += d;
      }
      st.answered = [...u.stats.answered];
      gwCount += sCount;
      gwErrors += sErrors;
      const latency = st.latency.push(u.stats.latency.counts);
      const point = st.history.push(wallNow, dt, sCount, sErrors, quantileMs(latency.last, 0.99));
      reasons.push(...serviceReasons({ name: u.name, states, eligible, panic: u.inPanic, recent: st.history.recent(ERROR_RULE.samples) }));
      services.push({
        name: u.name,
        panic: u.inPanic,
        rate: point.rate,
        errorRate: point.errorRate,
        p99Ms: quantileMs(latency.window, 0.99),
        active: u.stats.active,
        retriesPerSecond: round(retries / dt),
        budgetExhausted: u.stats.budgetExhausted,
        endpoints,
        point,
        departed: this.departed(u.name, endpoints, wallNow),
      });
    }
    // Departures of a service the gateway does not route (any secret holder may register one) are not kept.
    for (const name of this.departures.keys()) if (!services.some((s) => s.name === name)) this.departures.delete(name);
    const g = this.source.gateway();
    if (g.draining) reasons.unshift(drainingReason(g.inflight));
    this.last = {
      gateway: {
        version: g.version, pid: process.pid, uptimeSeconds: g.uptimeSeconds, health: gatewayHealth(g.draining, reasons), reasons, inflight: g.inflight, listen: g.listen,
        rssBytes: process.memoryUsage.rss(), rate: round(gwCount / dt), errorRate: gwCount > 0 ? round(gwErrors / gwCount, 3) : 0,
      },
      services,
      gateways: this.source.gateways?.() ?? [],
      caches: [...(this.source.caches?.() ?? [])].map(cacheView),
      timeline: this.timeline.slice(-100),
      sampledAt: new Date(wallNow).toISOString(),
    };
    for (const l of this.listeners) l({ type: 'snapshot', data: this.last });
    return this.last;
  }

  private serviceTrack(u: Upstream): ServiceTrack {
    let st = this.services.get(u);
    if (st === undefined) {
      // From zero, like the upstream's own counts: nothing before the first sample is missed.
      st = { retries: u.stats.retries.map(() => 0), budgetExhausted: 0, answered: u.stats.answered.map(() => 0), latency: new HistogramWindow(), history: new HistoryRing() };
      this.services.set(u, st);
    }
    return st;
  }

  /** The service's recent departures that are not back, dropping the old ones. */
  private departed(service: string, present: readonly EndpointView[], now: number): Departure[] {
    const list = this.departures.get(service);
    if (list === undefined) return [];
    const kept = list.filter((d) => now - Date.parse(d.time) < DEPARTED_KEEP_MS);
    if (kept.length === 0) this.departures.delete(service);
    else if (kept.length < list.length) this.departures.set(service, kept);
    return kept.filter((d) => !present.some((e) => e.id === d.id));
  }

  /** Retries are many: one timeline event per service and second, with the reasons. */
  private retryEvents(u: Upstream, st: ServiceTrack): void {
    const parts: string[] = [];
    let total = 0;
    for (let i = 0; i < FAILURE_KINDS.length; i++) {
      const d = u.stats.retries[i]! - st.retries[i]!;
      if (d > 0) {
        parts.push(`${d} ${FAILURE_KINDS[i]!}`);
        total += d;
      }
    }
    st.retries = [...u.stats.retries];
    if (total > 0) this.record('retry', `${total} ${total === 1 ? 'retry' : 'retries'} (${parts.join(', ')})`, u.name);
    const refused = u.stats.budgetExhausted - st.budgetExhausted;
    st.budgetExhausted = u.stats.budgetExhausted;
    if (refused > 0) {
      this.record('budget', `retry budget exhausted: ${refused} ${refused === 1 ? 'retry or hedge' : 'retries or hedges'} not sent`, u.name);
      this.onBudgetExhausted?.(u.name, refused);
    }
  }
}

const CAUSE_TEXT: Record<LeaveCause, string> = {
  drained: 'drained',
  deregistered: 'deregistered without draining',
  'connection-lost': 'connection lost (its keep-alive stream broke: the process died)',
  'lease-expired': 'lease expired (no heartbeat within its TTL: frozen or unreachable)',
};

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function cacheView(c: CacheStatsView): CacheView {
  const asked = c.hits + c.misses;
  const view: CacheView = {
    route: c.route, hits: c.hits, misses: c.misses, stale: c.stale.reduce((a, b) => a + b, 0),
    hitRatio: asked > 0 ? round(c.hits / asked, 3) : null, entries: c.entries, bytes: c.bytes,
  };
  if (c.redis !== undefined) view.redis = { hits: c.redis.hits, errors: c.redis.errors, fallbacks: c.redis.fallbacks };
  return view;
}
