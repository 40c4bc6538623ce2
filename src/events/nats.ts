import { trackForDrain } from '../core/drain.js';
import { TandemError } from '../core/errors.js';
import type { Bus, DeadLetter, Handler, ReplayOptions, SubscribeOptions, Subscription } from './bus.js';
import { Backoff, untilConfirmed } from './backoff.js';
import { parseDeadLetterOptions, parseNatsBusOptions, parseReplayOptions } from './options.js';
import { checkGroup, checkTopic, publishPayload, decodeEnvelope, encodeEnvelope, type Envelope, type PublishOptions } from './envelope.js';
import { EventMetrics, type EventStats } from './metrics.js';
import { loadOptional } from '../core/optional.js';
import { HandlerRunner, resolveSubscribeOptions, type Delivery } from './runner.js';

type NatsCore = typeof import('@nats-io/transport-node');
type NatsJs = typeof import('@nats-io/jetstream');
type NatsConnection = import('@nats-io/transport-node').NatsConnection;
type JetStreamClient = import('@nats-io/jetstream').JetStreamClient;
type JetStreamManager = import('@nats-io/jetstream').JetStreamManager;
type JsMsg = import('@nats-io/jetstream').JsMsg;
type ConsumerMessages = import('@nats-io/jetstream').ConsumerMessages;

/**
 * What `NatsBus.connection` promises of the NATS connection, declared here so that tandem's
 * types never import `@nats-io/*` (optional peers). At run time it is the `NatsConnection`.
 */
export interface NatsConnectionLike {
  close(): Promise<void>;
  isClosed(): boolean;
  getServer(): string;
}

export interface NatsBusOptions {
  /** Server URL(s). Default `nats://127.0.0.1:4222`. */
  servers?: string | string[];
  /** Connection name shown by the server. */
  name?: string;
  /** Subjects are `<prefix>.t.<topic>` (messages), `.r.<topic>.<group>` (replays), `.dlq.<topic>.<group>`. Default `tandem`. */
  subjectPrefix?: string;
  /** Streams are `<prefix>_<topic with . as _>` and `<prefix>_DLQ_…`. Default `TANDEM`. */
  streamPrefix?: string;
  publishTimeout?: number;
  drainTimeout?: number;
  reconnectInitial?: number;
  reconnectMax?: number;
  /** Stream retention (max age), publish dedupe window, consumer ack deadline; ms. */
  maxAge?: number;
  duplicateWindow?: number;
  ackWait?: number;
  /** Failures the bus recovers from by itself (a lost ack, a reconnect); default: ignored. */
  onError?: (err: unknown) => void;
}

const ms2ns = (ms: number): number => ms * 1_000_000;
/** Ref'd: a publish that waits for a reconnect keeps the process alive. */
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface NatsSubscription extends Subscription {
  runner: HandlerRunner<unknown, unknown>;
}

/**
 * NATS JetStream adapter (server 2.9+: no 2.10 features). One stream per topic with file
 * storage and publish dedupe on the message id; one durable pull consumer per group with
 * explicit acks; retries are `nak(delay)`; dead letters go to a per-topic DLQ stream, since
 * JetStream has none of its own.
 */
export class NatsBus implements Bus {
  readonly drainName = 'nats bus';
  /** Open buses are closed by serve()'s drain (core/drain.ts). */
  private readonly drainEntry = trackForDrain(this);
  readonly kind = 'nats' as const;
  private readonly metrics = new EventMetrics();
  private readonly ensured = new Map<string, Promise<void>>();
  /** Topics whose stream has taken a publish. */
  private readonly ready = new Set<string>();
  private readonly subscriptions = new Set<NatsSubscription>();
  private closed = false;
  private readonly o: ReturnType<typeof parseNatsBusOptions>;
  private readonly reconnectBackoff: Backoff;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly core: NatsCore,
    private readonly jsMod: NatsJs,
    options: ReturnType<typeof parseNatsBusOptions>,
    reconnectBackoff: Backoff,
  ) {
    this.o = options;
    this.reconnectBackoff = reconnectBackoff;
  }

  /** Connects (loading the NATS client on first use). Reconnects forever with backoff afterwards. */
  static async connect(natsOptions: NatsBusOptions = {}): Promise<NatsBus> {
    // Checked before the client loads: a misspelt option fails the same with or without it.
    const options = parseNatsBusOptions(natsOptions);
    const core = await loadOptional('@nats-io/transport-node', 'the NATS adapter', () => import('@nats-io/transport-node'));
    const jsMod = await loadOptional('@nats-io/jetstream', 'the NATS adapter', () => import('@nats-io/jetstream'));
    const backoff = new Backoff(options.reconnectInitial, options.reconnectMax);
    let tries = 0;
    const nc = await core.connect({
      servers: options.servers,
      ...(options.name === undefined ? {} : { name: options.name }),
      maxReconnectAttempts: -1,
      reconnectDelayHandler: () => backoff.delay(++tries),
      pingInterval: 5_000,
      maxPingOut: 2,
      // Every request would otherwise capture a stack trace up front (a third of the publish
      // path's CPU); our errors say where they come from already.
      noAsyncTraces: true,
    });
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') tries = 0;
    })().catch(() => {});
    const js = jsMod.jetstream(nc);
    const jsm = await jsMod.jetstreamManager(nc);
    return new NatsBus(nc, js, jsm, core, jsMod, options, backoff);
  }

  streamName(topic: string): string {
    return `${this.o.streamPrefix}_${topic.replaceAll('.', '_')}`;
  }

  dlqStreamName(topic: string): string {
    return `${this.o.streamPrefix}_DLQ_${topic.replaceAll('.', '_')}`;
  }

  private subject(topic: string): string {
    return `${this.o.subjectPrefix}.t.${topic}`;
  }

  private replaySubject(topic: string, group: string): string {
    return `${this.o.subjectPrefix}.r.${topic}.${group}`;
  }

  private dlqSubject(topic: string, group: string): string {
    return `${this.o.subjectPrefix}.dlq.${topic}.${group}`;
  }

  publish<T>(topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>> {
    return publishPayload(this, topic, payload, options);
  }

  /**
   * Retries until the server acks or publishTimeout passes. The message id is the JetStream
   * msgID, so a retry after a lost ack is dropped as a duplicate by the server.
   */
  async publishEnvelope(envelope: Envelope): Promise<void> {
    this.checkOpen();
    checkTopic(envelope.topic);
    const data = encodeEnvelope(envelope);
    const subject = this.subject(envelope.topic);
    // Fast path: the stream is known to exist and the server answers at once.
    if (this.ready.has(envelope.topic)) {
      try {
        await this.js.publish(subject, data, { msgID: envelope.id, timeout: Math.min(this.o.publishTimeout, 5_000) });
        this.metrics.countPublished(envelope.topic);
        return;
      } catch {
        // fall through to the retrying path (same msgID: a retry after a lost ack is deduplicated)
      }
    }
    await this.confirmed(`publish to ${envelope.topic}`, async (timeout) => {
      await this.ensureStream(envelope.topic);
      await this.js.publish(subject, data, { msgID: envelope.id, timeout });
    });
    this.ready.add(envelope.topic);
    this.metrics.countPublished(envelope.topic);
  }

  private confirmed(what: string, op: (timeout: number) => Promise<void>): Promise<void> {
    return untilConfirmed({ what, by: 'confirmed by NATS', timeoutMs: this.o.publishTimeout, backoff: this.reconnectBackoff, closed: () => this.closed },
      (left) => op(Math.max(200, Math.min(left, 5_000))));
  }

  private ensureStream(topic: string): Promise<void> {
    return this.ensure(this.streamName(topic), [this.subject(topic), `${this.o.subjectPrefix}.r.${topic}.*`], this.o.maxAge);
  }

  private ensureDlqStream(topic: string): Promise<void> {
    return this.ensure(this.dlqStreamName(topic), [`${this.o.subjectPrefix}.dlq.${topic}.*`], 0);
  }

  private ensure(name: string, subjects: string[], maxAge: number): Promise<void> {
    let p = this.ensured.get(name);
    if (!p) {
      p = (async () => {
        try {
          await this.jsm.streams.info(name);
        } catch {
          await this.jsm.streams.add({
            name,
            subjects,
            retention: this.jsMod.RetentionPolicy.Limits,
            storage: this.jsMod.StorageType.File,
            max_age: ms2ns(maxAge),
            duplicate_window: ms2ns(this.o.duplicateWindow),
            num_replicas: 1,
          });
        }
      })();
      this.ensured.set(name, p);
      p.catch(() => this.ensured.delete(name));
    }
    return p;
  }

  private async ensureConsumer(topic: string, group: string): Promise<void> {
    const stream = this.streamName(topic);
    try {
      await this.jsm.consumers.info(stream, group);
    } catch {
      await this.jsm.consumers.add(stream, {
        durable_name: group,
        ack_policy: this.jsMod.AckPolicy.Explicit,
        deliver_policy: this.jsMod.DeliverPolicy.New,
        ack_wait: ms2ns(this.o.ackWait),
        max_deliver: -1,
        max_ack_pending: 10_000,
      });
    }
  }

  async subscribe<T = unknown, Tx = undefined>(topic: string, group: string, handler: Handler<T, Tx>, options?: SubscribeOptions<Tx>): Promise<Subscription> {
    this.checkOpen();
    checkTopic(topic);
    checkGroup(group);
    const resolved = resolveSubscribeOptions(options);
    await this.confirmed(`subscribe to ${topic}`, async () => {
      await this.ensureStream(topic);
      await this.ensureDlqStream(topic);
      await this.ensureConsumer(topic, group);
    });
    const runner = new HandlerRunner(topic, group, handler, resolved, this.metrics.forSubscription(topic, group), this.o.onError, Math.max(1_000, this.o.ackWait / 2)) as HandlerRunner<unknown, unknown>;
    let messages: ConsumerMessages | undefined;
    const replayPrefix = `${this.o.subjectPrefix}.r.${topic}.`;
    const loop = (async () => {
      let failures = 0;
      while (!runner.isClosing) {
        try {
          const consumer = await this.js.consumers.get(this.streamName(topic), group);
          messages = await consumer.consume({ max_messages: Math.max(resolved.concurrency, 8) });
          if (runner.isClosing) {
            messages.stop(); // close() would wait for an iteration that never comes
            break;
          }
          for await (const m of messages) {
            failures = 0;
            if (m.subject.startsWith(replayPrefix) && m.subject.slice(replayPrefix.length) !== group) {
              m.ack(); // a replay for another group
              continue;
            }
            const slot = runner.slot();
            if (!(slot === true || (slot !== false && (await slot)))) {
              m.nak(); // closing: let another subscriber of the group have it now
              continue;
            }
            void runner.run(this.delivery(m, topic, group));
          }
        } catch (err) {
          if (runner.isClosing) break;
          this.o.onError(err);
          await sleep(this.reconnectBackoff.delay(++failures));
        }
      }
    })();
    const subscription: NatsSubscription = {
      topic,
      group,
      runner,
      close: async () => {
        const drained = runner.drain(this.o.drainTimeout);
        messages?.stop();
        await drained;
        await loop;
        this.subscriptions.delete(subscription);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  private delivery(m: JsMsg, topic: string, group: string): Delivery {
    return {
      body: m.data,
      attempt: m.info.deliveryCount,
      redelivered: m.redelivered,
      ack: () => m.ack(),
      retry: (delay) => m.nak(delay),
      working: () => m.working(),
      deadLetter: async (error, attempts) => {
        const h = this.core.headers();
        h.set('Tandem-Error', JSON.stringify(error));
        h.set('Tandem-Attempts', String(attempts));
        h.set('Tandem-Failed-At', new Date().toISOString());
        const data = m.data;
        await this.confirmed(`dead-letter to ${topic}/${group}`, async (timeout) => {
          await this.js.publish(this.dlqSubject(topic, group), data, { headers: h, msgID: `${m.info.stream}:${m.seq}:${group}`, timeout });
        });
        m.ack();
      },
    };
  }

  private async storedDeadLetters(topic: string, group: string, limit: number): Promise<Array<DeadLetter & { seq: number }>> {
    const stream = this.dlqStreamName(topic);
    let state;
    try {
      state = (await this.jsm.streams.info(stream)).state;
    } catch {
      return [];
    }
    const subject = this.dlqSubject(topic, group);
    const out: Array<DeadLetter & { seq: number }> = [];
    for (let seq = state.first_seq; seq <= state.last_seq && out.length < limit && state.messages > 0; seq++) {
      const sm = await this.jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (!sm || sm.subject !== subject) continue;
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(sm.data);
      } catch {
        envelope = { id: `undecodable-${seq}`, topic, time: sm.time.toISOString(), correlationId: '', trace: { traceparent: '' }, headers: {}, payload: Buffer.from(sm.data).toString('utf8') };
      }
      out.push({
        seq,
        envelope,
        group,
        error: JSON.parse(sm.header?.get('Tandem-Error') || '{"message":"unknown"}') as DeadLetter['error'],
        attempts: Number(sm.header?.get('Tandem-Attempts') || 0),
        failedAt: sm.header?.get('Tandem-Failed-At') || sm.time.toISOString(),
      });
    }
    return out;
  }

  async deadLetters(topic: string, group: string, limitOptions?: { limit?: number }): Promise<DeadLetter[]> {
    const options = parseDeadLetterOptions(limitOptions);
    checkTopic(topic);
    checkGroup(group);
    return (await this.storedDeadLetters(topic, group, options.limit)).map(({ seq: _seq, ...d }) => d);
  }

  async replayDeadLetters(topic: string, group: string, replayOptions?: ReplayOptions): Promise<number> {
    const options = parseReplayOptions(replayOptions);
    checkTopic(topic);
    checkGroup(group);
    const chosen = (await this.storedDeadLetters(topic, group, Number.MAX_SAFE_INTEGER)).filter((d) => options.ids === undefined || options.ids.includes(d.envelope.id));
    const stream = this.dlqStreamName(topic);
    for (const d of chosen) {
      const data = encodeEnvelope(d.envelope);
      await this.confirmed(`replay to ${topic}/${group}`, async (timeout) => {
        await this.js.publish(this.replaySubject(topic, group), data, { msgID: `replay:${stream}:${d.seq}`, timeout });
      });
      await this.jsm.streams.deleteMessage(stream, d.seq);
    }
    return chosen.length;
  }

  async stats(): Promise<EventStats> {
    const subscriptions: EventStats['subscriptions'] = {};
    const inFlight = new Map<string, number>();
    for (const s of this.subscriptions) inFlight.set(`${s.topic}/${s.group}`, (inFlight.get(`${s.topic}/${s.group}`) ?? 0) + s.runner.inFlight);
    for (const [key, counts] of this.metrics.subscriptions) {
      const slash = key.lastIndexOf('/');
      const [topic, group] = [key.slice(0, slash), key.slice(slash + 1)];
      const info = await this.jsm.consumers.info(this.streamName(topic), group).catch(() => undefined);
      subscriptions[key] = this.metrics.snapshot(counts, info?.num_pending ?? 0, inFlight.get(key) ?? 0);
    }
    return { published: Object.fromEntries(this.metrics.published), subscriptions };
  }

  /** Deletes a topic's streams (its message stream and its dead letters) and every group's consumer with them. */
  async deleteTopic(topic: string): Promise<void> {
    this.ready.delete(topic);
    for (const name of [this.streamName(topic), this.dlqStreamName(topic)]) {
      this.ensured.delete(name);
      await this.jsm.streams.delete(name).catch(() => {});
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.drainEntry.dispose();
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    await Promise.race([this.nc.flush(), sleep(2_000)]).catch(() => {});
    await this.nc.close();
  }

  /** The underlying connection (a `NatsConnection`), for tests and diagnostics. */
  get connection(): NatsConnectionLike {
    return this.nc;
  }

  private checkOpen(): void {
    if (this.closed) throw new TandemError('TANDEM_ERR_BUS_CLOSED', 'the bus is closed');
  }
}
