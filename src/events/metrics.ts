import { Gauge, type Registry } from 'prom-client';

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

/** Plain numbers bumped on the delivery path; read when stats() or a scrape asks. */
export class EventMetrics {
  readonly published = new Map<string, number>();
  readonly subscriptions = new Map<string, Record<SubscriptionCounter, number>>();

  countPublished(topic: string): void {
    this.published.set(topic, (this.published.get(topic) ?? 0) + 1);
  }

  forSubscription(topic: string, group: string): Record<SubscriptionCounter, number> {
    const key = `${topic}/${group}`;
    let c = this.subscriptions.get(key);
    if (!c) {
      c = { delivered: 0, acked: 0, retried: 0, deadLettered: 0, redelivered: 0 };
      this.subscriptions.set(key, c);
    }
    return c;
  }
}

/**
 * Registers `tandem_events_*` gauges/counters in a prom-client registry, read from
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
    name: 'tandem_events_published_total',
    help: 'Messages the broker confirmed, by topic.',
    labelNames: ['topic'],
    registers: [registry],
    async collect() {
      const s = await read();
      this.reset();
      for (const [topic, n] of Object.entries(s.published)) this.set({ topic }, n);
    },
  });
  const per = (name: string, help: string, pick: (v: EventStats['subscriptions'][string]) => number): void => {
    new Gauge({
      name,
      help,
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
  per('tandem_events_delivered_total', 'Deliveries handed to a handler (retries and redeliveries included).', (v) => v.delivered);
  per('tandem_events_acked_total', 'Messages acknowledged after their handler succeeded (or found them already done in the inbox).', (v) => v.acked);
  per('tandem_events_retried_total', 'Failed attempts scheduled for a retry with backoff.', (v) => v.retried);
  per('tandem_events_dead_lettered_total', 'Messages moved to the dead-letter topic.', (v) => v.deadLettered);
  per('tandem_events_redelivered_total', 'Deliveries the broker marked as redelivered (a consumer died or did not ack in time).', (v) => v.redelivered);
  per('tandem_events_consumer_lag', 'Messages waiting for the group, as the broker reports it.', (v) => v.lag);
  per('tandem_events_in_flight', 'Handlers running now.', (v) => v.inFlight);
}
