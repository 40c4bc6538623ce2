import { trackForDrain } from '../core/drain.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { TandemError } from '../core/errors.js';
import type { Bus, DeadLetter, Handler, ReplayOptions, SubscribeOptions, Subscription } from './bus.js';
import { parseDeadLetterOptions, parseMemoryBusOptions, parseReplayOptions } from './options.js';
import { checkGroup, checkTopic, publishPayload, decodeEnvelope, encodeEnvelope, type Envelope, type PublishOptions } from './envelope.js';
import { EventMetrics, type EventStats } from './metrics.js';
import { HandlerRunner, resolveSubscribeOptions } from './runner.js';

interface Item {
  body: Buffer;
  /** Deliveries so far. */
  deliveries: number;
}

interface MemoryDeadLetter extends DeadLetter {
  body: Buffer;
}

/** One group: a queue shared by its competing subscribers. */
class Group {
  readonly ready: Item[] = [];
  readonly runners: Array<HandlerRunner<unknown, unknown>> = [];
  private next = 0;

  constructor(private readonly bus: MemoryBus, readonly topic: string, readonly name: string) {}

  /** Hands ready items to subscribers with a free slot, round robin. */
  pump(): void {
    while (this.ready.length > 0) {
      const runner = this.pick();
      if (!runner) return;
      const item = this.ready.shift()!;
      item.deliveries++;
      void runner.run({
        body: item.body,
        attempt: item.deliveries,
        redelivered: false,
        ack: () => {},
        retry: (delay) => this.bus.later(() => this.enqueue(item), delay),
        deadLetter: async (error, attempts) => this.bus.addDeadLetter(this, item.body, error, attempts),
      }).then(() => this.pump());
    }
  }

  enqueue(item: Item): void {
    this.ready.push(item);
    this.pump();
  }

  private pick(): HandlerRunner<unknown, unknown> | undefined {
    for (let i = 0; i < this.runners.length; i++) {
      const r = this.runners[(this.next + i) % this.runners.length]!;
      if (r.hasSlot) {
        this.next = (this.next + i + 1) % this.runners.length;
        return r;
      }
    }
    return undefined;
  }
}

export interface MemoryBusOptions {
  clock?: Clock;
  drainTimeout?: number;
}

/**
 * The in-process twin of a broker: same promises as the NATS and RabbitMQ adapters (the
 * contract suite runs against all three), for tests and single-process use. Messages are
 * serialized as on a wire, so a handler never shares objects with the publisher. Nothing
 * survives the process.
 */
export class MemoryBus implements Bus {
  readonly drainName = 'memory bus';
  /** Open buses are closed by serve()'s drain (core/drain.ts). */
  private readonly drainEntry = trackForDrain(this);
  readonly kind = 'memory' as const;
  private readonly groups = new Map<string, Map<string, Group>>();
  private readonly dead = new Map<string, MemoryDeadLetter[]>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly timers = new Set<TimerHandle>();
  private readonly metrics = new EventMetrics();
  private readonly clock: Clock;
  private readonly drainTimeout: number;
  private closed = false;

  constructor(memoryOptions: MemoryBusOptions = {}) {
    const options = parseMemoryBusOptions(memoryOptions);
    this.clock = options.clock ?? realClock;
    this.drainTimeout = options.drainTimeout;
  }

  publish<T>(topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>> {
    return publishPayload(this, topic, payload, options);
  }

  async publishEnvelope(envelope: Envelope): Promise<void> {
    this.checkOpen();
    checkTopic(envelope.topic);
    const body = encodeEnvelope(envelope);
    for (const group of this.groups.get(envelope.topic)?.values() ?? []) group.enqueue({ body, deliveries: 0 });
    this.metrics.countPublished(envelope.topic);
  }

  async subscribe<T = unknown, Tx = undefined>(topic: string, group: string, handler: Handler<T, Tx>, options?: SubscribeOptions<Tx>): Promise<Subscription> {
    this.checkOpen();
    checkTopic(topic);
    checkGroup(group);
    const g = this.group(topic, group);
    const runner = new HandlerRunner(topic, group, handler, resolveSubscribeOptions(options), this.metrics.forSubscription(topic, group), () => {});
    g.runners.push(runner as HandlerRunner<unknown, unknown>);
    const subscription: Subscription = {
      topic,
      group,
      close: async () => {
        await runner.drain(this.drainTimeout);
        const i = g.runners.indexOf(runner as HandlerRunner<unknown, unknown>);
        if (i >= 0) g.runners.splice(i, 1);
        this.subscriptions.delete(subscription);
      },
    };
    this.subscriptions.add(subscription);
    g.pump();
    return subscription;
  }

  async deadLetters(topic: string, group: string, options?: { limit?: number }): Promise<DeadLetter[]> {
    const { limit } = parseDeadLetterOptions(options);
    return (this.dead.get(`${topic}/${group}`) ?? []).slice(0, limit).map(({ body: _body, ...rest }) => rest);
  }

  async replayDeadLetters(topic: string, group: string, replayOptions?: ReplayOptions): Promise<number> {
    const options = parseReplayOptions(replayOptions);
    const list = this.dead.get(`${topic}/${group}`) ?? [];
    const chosen = list.filter((d) => options.ids === undefined || options.ids.includes(d.envelope.id));
    const g = this.group(topic, group);
    for (const d of chosen) {
      list.splice(list.indexOf(d), 1);
      g.enqueue({ body: d.body, deliveries: 0 });
    }
    return chosen.length;
  }

  async stats(): Promise<EventStats> {
    const subscriptions: EventStats['subscriptions'] = {};
    for (const [key, counts] of this.metrics.subscriptions) {
      const [topic, group] = [key.slice(0, key.lastIndexOf('/')), key.slice(key.lastIndexOf('/') + 1)];
      const g = this.groups.get(topic)?.get(group);
      subscriptions[key] = this.metrics.snapshot(counts, g?.ready.length ?? 0, g?.runners.reduce((n, r) => n + r.inFlight, 0) ?? 0);
    }
    return { published: Object.fromEntries(this.metrics.published), subscriptions };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.drainEntry.dispose();
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.timers.clear();
  }

  /** @internal */
  later(fn: () => void, ms: number): void {
    const t = this.clock.setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  /** @internal */
  addDeadLetter(group: Group, body: Buffer, error: DeadLetter['error'], attempts: number): void {
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(body);
    } catch {
      envelope = { id: 'undecodable', topic: group.topic, time: new Date().toISOString(), correlationId: '', trace: { traceparent: '' }, headers: {}, payload: body.toString('utf8') };
    }
    const key = `${group.topic}/${group.name}`;
    const list = this.dead.get(key) ?? [];
    list.push({ envelope, body, group: group.name, error, attempts, failedAt: new Date().toISOString() });
    this.dead.set(key, list);
  }

  private group(topic: string, name: string): Group {
    let byName = this.groups.get(topic);
    if (!byName) this.groups.set(topic, (byName = new Map()));
    let g = byName.get(name);
    if (!g) byName.set(name, (g = new Group(this, topic, name)));
    return g;
  }

  private checkOpen(): void {
    if (this.closed) throw new TandemError('TANDEM_ERR_BUS_CLOSED', 'the bus is closed');
  }
}
