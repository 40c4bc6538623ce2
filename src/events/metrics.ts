import { Gauge, type Registry } from 'prom-client';
import { METRICS, eventCounters, type EventCounters, type MetricSpec } from '../observe/metrics.js';

/** Counters for one (topic, group) subscription or, for `published`, one topic. */
export interface EventCounts {
  published: number;
  delivered: number;
  acked: number;
  retried: number;
  deadLettered: number;
  redelivered: number;
}

export interface EventStats {
  /** Per topic: messages the broker confirmed. */
  published: Record<string, number>;
  /** Per `topic/group`. `lag` is messages waiting for the group (not yet delivered), as the broker reports it. */
  subscriptions: Record<string, Omit<EventCounts, 'published'> & { lag: number; inFlight: number }>;
}

export type SubscriptionCounter = 'delivered' | 'acked' | 'retried' | 'deadLettered' | 'redelivered';

/**
 * Plain numbers bumped on the delivery path; read when stats() or a scrape asks. They are the
 * metrics catalog's own counters (observe/metrics.ts, `eventCounters`), so the process's
 * /metrics (served by tandem/node) shows them without a second set of books.
 */
export class EventMetrics {
  readonly published = new Map<string, number>();
  readonly subscriptions = new Map<string, EventCounters>();

  countPublished(topic: string): void {
    this.published.set(topic, (this.published.get(topic) ?? 0) + 1);
    eventCounters(topic).published++;
  }

  forSubscription(topic: string, group: string): EventCounters {
    const key = `${topic}/${group}`;
    let c = this.subscriptions.get(key);
    if (!c) {
      c = eventCounters(topic, group);
      this.subscriptions.set(key, c);
    }
    return c;
  }

  /**
   * One subscription's counts for stats(), with the lag the broker reported and the handlers
   * running now; both are also kept in the catalog's gauges.
   */
  snapshot(counts: EventCounters, lag: number, inFlight: number): EventStats['subscriptions'][string] {
    counts.lag = lag;
    counts.inFlight = inFlight;
    return { delivered: counts.delivered, acked: counts.acked, retried: counts.retried, deadLettered: counts.deadLettered, redelivered: counts.redelivered, lag, inFlight };
  }
}

/**
 * Registers the catalog's `tandem_events_*` metrics (names and help from observe/metrics.ts) in
 * a registry of the application's own, read from
 * `bus.stats()` at scrape time (lag is a broker query, so a scrape costs one round trip per
 * subscription).
 */
export function registerEventMetrics(registry: Registry, bus: { stats(): Promise<EventStats> }): void {
  let pending: Promise<EventStats> | undefined;
  const read = (): Promise<EventStats> => {
    pending ??= bus.stats().finally(() => {
      pending = undefined;
    });
    return pending;
  };
  new Gauge({
    name: METRICS.eventsPublished.name,
    help: METRICS.eventsPublished.help,
    labelNames: ['topic'],
    registers: [registry],
    async collect() {
      const s = await read();
      this.reset();
      for (const [topic, n] of Object.entries(s.published)) this.set({ topic }, n);
    },
  });
  const per = (metric: MetricSpec, pick: (v: EventStats['subscriptions'][string]) => number): void => {
    new Gauge({
      name: metric.name,
      help: metric.help,
      labelNames: ['topic', 'group'],
      registers: [registry],
      async collect() {
        const s = await read();
        this.reset();
        for (const [key, v] of Object.entries(s.subscriptions)) {
          const slash = key.lastIndexOf('/');
          this.set({ topic: key.slice(0, slash), group: key.slice(slash + 1) }, pick(v));
        }
      },
    });
  };
  per(METRICS.eventsDelivered, (v) => v.delivered);
  per(METRICS.eventsAcked, (v) => v.acked);
  per(METRICS.eventsRetried, (v) => v.retried);
  per(METRICS.eventsDeadLettered, (v) => v.deadLettered);
  per(METRICS.eventsRedelivered, (v) => v.redelivered);
  per(METRICS.eventsLag, (v) => v.lag);
  per(METRICS.eventsInflight, (v) => v.inFlight);
}
