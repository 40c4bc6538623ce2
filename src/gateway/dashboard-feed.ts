import type { Upstream } from '../upstream/upstream.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { LATENCY_BUCKETS_SECONDS } from '../observe/histogram.js';
import { FAILURE_KINDS } from '../upstream/resilience/retry-policy.js';

/**
 * What the dashboard (`/` on the admin listener), `/admin/dashboard` and `tandem status` show:
 * a sample of the cluster once a second — per endpoint request rate, error rate, p99 over the
 * last 10 s, latency estimate, in-flight, state — and a timeline of recent events (joins,
 * leaves, ejections and other state changes, retries, budget exhaustion, panic, reloads,
 * drain). Sampling reads the same plain numbers the metrics read; the request path is untouched.
 */

export type TimelineKind = 'join' | 'leave' | 'state' | 'ejection' | 'retry' | 'budget' | 'panic' | 'reload' | 'drain' | 'start';

export interface TimelineEvent {
  seq: number;
  /** ISO time. */
  time: string;
  kind: TimelineKind;
  service?: string;
  endpoint?: string;
  text: string;
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

export interface ServiceView {
  name: string;
  panic: boolean;
  rate: number;
  errorRate: number;
  p99Ms: number | null;
  active: number;
  retriesPerSecond: number;
  budgetExhausted: number;
  endpoints: EndpointView[];
}

export interface DashboardSnapshot {
  gateway: { version: string; pid: number; uptimeSeconds: number; health: 'ok' | 'draining'; inflight: number; listen: string; rssBytes: number; rate: number; errorRate: number };
  services: ServiceView[];
  timeline: TimelineEvent[];
  sampledAt: string;
}

export interface FeedSource {
  upstreams(): Iterable<Upstream>;
  /** Registered instances of a service that are draining (no longer members: shown with that state). */
  draining?(service: string): ReadonlyArray<{ address: string; weight: number }>;
  gateway(): { version: string; uptimeSeconds: number; draining: boolean; inflight: number; listen: string };
}

/** Samples kept per endpoint for the p99 window (one a second). */
const WINDOW = 10;
const TIMELINE_SIZE = 200;
const BUCKET_MS = LATENCY_BUCKETS_SECONDS.map((s) => s * 1000);

/** Per-endpoint memory between samples. */
class EndpointTrack {
  responses: number[];
  /** Ring of cumulative histogram counts, one per sample. */
  private readonly ring: Float64Array[] = [];
  private at = 0;
  /** Counts start at zero with the endpoint: the first sample sees everything since it was created. */
  constructor(e: Endpoint) {
    this.responses = e.responses.map(() => 0);
  }

  /** Pushes the current histogram; returns the counts per bucket over the window. */
  window(e: Endpoint): Float64Array {
    const now = Float64Array.from(e.latency.counts);
    const oldest = this.ring.length === 0 ? undefined : this.ring.length < WINDOW ? this.ring[0] : this.ring[this.at];
    if (this.ring.length < WINDOW) this.ring.push(now);
    else {
      this.ring[this.at] = now;
      this.at = (this.at + 1) % WINDOW;
    }
    const delta = new Float64Array(now.length);
    for (let i = 0; i < now.length; i++) delta[i] = now[i]! - (oldest?.[i] ?? 0);
    return delta;
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

interface ServiceTrack { retries: number[]; budgetExhausted: number; answered: number[] }

export class ClusterFeed {
  private readonly endpoints = new WeakMap<Endpoint, EndpointTrack>();
  /** By upstream, not name: a service removed and added again by reloads starts from zero. */
  private readonly services = new WeakMap<Upstream, ServiceTrack>();
  private readonly timeline: TimelineEvent[] = [];
  private seq = 0;
  private last: DashboardSnapshot | undefined;
  private lastAt = performance.now();
  private readonly listeners = new Set<(message: { type: 'snapshot'; data: DashboardSnapshot } | { type: 'event'; data: TimelineEvent }) => void>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly source: FeedSource, intervalMs = 1000, private readonly onBudgetExhausted?: (service: string, refused: number) => void) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Adds a timeline event and pushes it to every stream at once. */
  record(kind: TimelineKind, text: string, service?: string, endpoint?: string): void {
    const event: TimelineEvent = { seq: ++this.seq, time: new Date().toISOString(), kind, text };
    if (service !== undefined) event.service = service;
    if (endpoint !== undefined) event.endpoint = endpoint;
    this.timeline.push(event);
    if (this.timeline.length > TIMELINE_SIZE) this.timeline.splice(0, this.timeline.length - TIMELINE_SIZE);
    for (const l of this.listeners) l({ type: 'event', data: event });
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
    const dt = Math.max(0.001, (now - this.lastAt) / 1000);
    this.lastAt = now;
    const services: ServiceView[] = [];
    let gwCount = 0;
    let gwErrors = 0;
    for (const u of this.source.upstreams()) {
      const endpoints: EndpointView[] = [];
      const snap = u.snapshot();
      const merged = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1);
      u.endpoints.forEach((e, i) => {
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
        const window = track.window(e);
        for (let b = 0; b < window.length; b++) merged[b]! += window[b]!;
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
        if (!endpoints.some((e) => e.id === d.address)) endpoints.push({ id: d.address, state: 'draining', rate: 0, errorRate: 0, p99Ms: null, latencyEstimateMs: 0, inflight: 0, weight: d.weight });
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
      services.push({
        name: u.name,
        panic: u.inPanic,
        rate: round(sCount / dt),
        errorRate: sCount > 0 ? round(sErrors / sCount, 3) : 0,
        p99Ms: quantileMs(merged, 0.99),
        active: u.stats.active,
        retriesPerSecond: round(retries / dt),
        budgetExhausted: u.stats.budgetExhausted,
        endpoints,
      });
    }
    const g = this.source.gateway();
    this.last = {
      gateway: {
        version: g.version, pid: process.pid, uptimeSeconds: g.uptimeSeconds, health: g.draining ? 'draining' : 'ok', inflight: g.inflight, listen: g.listen,
        rssBytes: process.memoryUsage.rss(), rate: round(gwCount / dt), errorRate: gwCount > 0 ? round(gwErrors / gwCount, 3) : 0,
      },
      services,
      timeline: this.timeline.slice(-100),
      sampledAt: new Date().toISOString(),
    };
    for (const l of this.listeners) l({ type: 'snapshot', data: this.last });
    return this.last;
  }

  private serviceTrack(u: Upstream): ServiceTrack {
    let st = this.services.get(u);
    if (st === undefined) {
      // From zero, like the upstream's own counts: nothing before the first sample is missed.
      st = { retries: u.stats.retries.map(() => 0), budgetExhausted: 0, answered: u.stats.answered.map(() => 0) };
      this.services.set(u, st);
    }
    return st;
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

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
