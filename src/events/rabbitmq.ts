import { trackForDrain } from '../core/drain.js';
import { TandemError } from '../core/errors.js';
import { Backoff, untilConfirmed } from './backoff.js';
import type { Bus, DeadLetter, Handler, ReplayOptions, SubscribeOptions, Subscription } from './bus.js';
import { parseDeadLetterOptions, parseRabbitMqBusOptions, parseReplayOptions } from './options.js';
import { checkGroup, checkTopic, publishPayload, decodeEnvelope, encodeEnvelope, type Envelope, type PublishOptions } from './envelope.js';
import { EventMetrics, type EventStats } from './metrics.js';
import { loadOptional } from '../core/optional.js';
import { HandlerRunner, resolveSubscribeOptions, type Delivery } from './runner.js';

type Amqp = typeof import('amqplib');
type ChannelModel = import('amqplib').ChannelModel;
type Channel = import('amqplib').Channel;
type ConfirmChannel = import('amqplib').ConfirmChannel;
type ConsumeMessage = import('amqplib').ConsumeMessage;
type GetMessage = import('amqplib').GetMessage;
type Headers = Record<string, unknown>;

/**
 * What `RabbitMqBus.connection` promises of the amqplib connection, declared here so that
 * tandem's types never import `amqplib` (an optional peer). At run time it is amqplib's
 * `ChannelModel`.
 */
export interface AmqpConnectionLike {
  close(): Promise<void>;
}

export interface RabbitMqBusOptions {
  /** Default `amqp://guest:guest@127.0.0.1:5672`. */
  url?: string;
  /** Shown as the connection name in the management UI and `rabbitmqctl list_connections`. */
  name?: string;
  /** Exchange name and queue prefix: queues are `<prefix>.<topic>.<group>` (+ `.dlq`, `.wait.<n>`). Default `tandem`. */
  prefix?: string;
  publishTimeout?: number;
  drainTimeout?: number;
  reconnectInitial?: number;
  reconnectMax?: number;
  /** The quorum queue's x-delivery-limit: a message that kills its consumer this often is dead-lettered by the broker. */
  deliveryLimit?: number;
  onError?: (err: unknown) => void;
}

/** Timers stay ref'd: a bus that is publishing or reconnecting keeps the process alive, like an open socket would. */
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Headers we add that must not follow a message back into its queue on replay. */
const OUR_HEADERS = ['x-tandem-attempts', 'x-tandem-error', 'x-tandem-attempts-made', 'x-tandem-failed-at', 'x-delivery-count', 'x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason', 'x-last-death-exchange', 'x-last-death-queue', 'x-last-death-reason'];

interface RabbitSubscription extends Subscription {
  runner: HandlerRunner<unknown, unknown>;
  attach(conn: ChannelModel): Promise<void>;
}

/**
 * RabbitMQ adapter (3.10+). One direct exchange; per group a durable quorum queue bound to the
 * topic, with x-delivery-limit and at-least-once dead-lettering to the group's `.dlq` queue as
 * a safety net; publisher confirms; retries wait in TTL'd queues that dead-letter back into the
 * group queue (one per attempt, so a short delay never waits behind a longer one of another
 * attempt). Reconnects with backoff and re-attaches every subscription.
 */
export class RabbitMqBus implements Bus {
  readonly drainName = 'rabbitmq bus';
  /** Open buses are closed by serve()'s drain (core/drain.ts). */
  private readonly drainEntry = trackForDrain(this);
  readonly kind = 'rabbitmq' as const;
  private readonly metrics = new EventMetrics();
  private readonly subscriptions = new Set<RabbitSubscription>();
  private readonly o: ReturnType<typeof parseRabbitMqBusOptions>;
  private readonly backoff: Backoff;
  private conn: ChannelModel | undefined;
  private pub: ConfirmChannel | undefined;
  private readyWaiters: Array<() => void> = [];
  private declaredWait = new Set<string>();
  private closed = false;
  private reconnecting = false;
  private reconnectTimer: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  private constructor(private readonly amqp: Amqp, options: ReturnType<typeof parseRabbitMqBusOptions>) {
    this.o = options;
    this.backoff = new Backoff(this.o.reconnectInitial, this.o.reconnectMax);
  }

  /** Connects (loading amqplib on first use); the first connection must succeed. */
  static async connect(rabbitOptions: RabbitMqBusOptions = {}): Promise<RabbitMqBus> {
    // Checked before amqplib loads: a misspelt option fails the same with or without it.
    const options = parseRabbitMqBusOptions(rabbitOptions);
    const amqp = await loadOptional('amqplib', 'the RabbitMQ adapter', () => import('amqplib'));
    const bus = new RabbitMqBus(amqp, options);
    await bus.open();
    return bus;
  }

  queueName(topic: string, group: string): string {
    return `${this.o.prefix}.${topic}.${group}`;
  }

  private async open(): Promise<void> {
    const conn = await this.amqp.connect(this.o.url, this.o.name === undefined ? {} : { clientProperties: { connection_name: this.o.name } });
    conn.on('error', (err: unknown) => this.o.onError(err));
    conn.on('close', () => this.lost(conn));
    const pub = await conn.createConfirmChannel();
    pub.on('error', (err: unknown) => this.o.onError(err));
    pub.on('close', () => {
      if (this.conn === conn && this.pub === pub) this.pub = undefined;
    });
    await pub.assertExchange(this.o.prefix, 'direct', { durable: true });
    this.declaredWait.clear();
    this.conn = conn;
    this.pub = pub;
    for (const s of this.subscriptions) await s.attach(conn);
    for (const w of this.readyWaiters.splice(0)) w();
  }

  private lost(conn: ChannelModel): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.pub = undefined;
    if (!this.closed) void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    for (let attempt = 1; !this.closed; attempt++) {
      await new Promise<void>((wake) => {
        this.reconnectTimer = { timer: setTimeout(wake, this.backoff.delay(attempt)), wake };
      });
      this.reconnectTimer = undefined;
      if (this.closed) break;
      try {
        await this.open();
        break;
      } catch (err) {
        this.o.onError(err);
        const c = this.conn;
        if (c) {
          this.conn = undefined;
          this.pub = undefined;
          await c.close().catch(() => {});
        }
      }
    }
    this.reconnecting = false;
  }

  /** The publish channel, waiting for a reconnect up to `timeout` ms. */
  private async channel(timeout: number): Promise<ConfirmChannel> {
    if (this.pub) return this.pub;
    if (this.conn && !this.reconnecting) {
      // the channel alone closed (a broker-side channel error): open another on the same connection
      const conn = this.conn;
      try {
        const pub = await conn.createConfirmChannel();
        pub.on('error', (err: unknown) => this.o.onError(err));
        pub.on('close', () => {
          if (this.pub === pub) this.pub = undefined;
        });
        this.pub = pub;
        return pub;
      } catch (err) {
        this.o.onError(err);
      }
    }
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    await new Promise<void>((resolve, reject) => {
      waiter = resolve;
      this.readyWaiters.push(resolve);
      timer = setTimeout(() => reject(new TandemError('TANDEM_ERR_PUBLISH_FAILED', 'not connected', { retryable: true })), timeout);
    }).finally(() => {
      clearTimeout(timer);
      this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
    });
    if (!this.pub) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', 'not connected', { retryable: true });
    return this.pub;
  }

  /** Sends until the broker confirms, across reconnects, for at most publishTimeout. */
  private confirmed(what: string, send: (ch: ConfirmChannel, done: (err: unknown) => void) => void): Promise<void> {
    return untilConfirmed({ what, by: 'confirmed by RabbitMQ', timeoutMs: this.o.publishTimeout, backoff: this.backoff, closed: () => this.closed }, async (left) => {
      const deadline = Date.now() + left;
      const ch = await this.channel(left);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new TandemError('TANDEM_ERR_PUBLISH_FAILED', 'no confirm in time', { retryable: true })), Math.max(1, deadline - Date.now()));
        send(ch, (err) => {
          clearTimeout(timer);
          if (err) reject(err instanceof Error ? err : new TandemError('TANDEM_ERR_PUBLISH_FAILED', `broker refused the message (nack): ${String(err)}`, { retryable: true }));
          else resolve();
        });
      });
    });
  }

  publish<T>(topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>> {
    return publishPayload(this, topic, payload, options);
  }

  async publishEnvelope(envelope: Envelope): Promise<void> {
    this.checkOpen();
    checkTopic(envelope.topic);
    const body = encodeEnvelope(envelope);
    const props = { persistent: true, messageId: envelope.id, contentType: 'application/json' };
    await this.confirmed(`publish to ${envelope.topic}`, (ch, done) => ch.publish(this.o.prefix, envelope.topic, body, props, done));
    this.metrics.countPublished(envelope.topic);
  }

  private async declareGroup(ch: Channel, topic: string, group: string): Promise<void> {
    const queue = this.queueName(topic, group);
    await ch.assertQueue(`${queue}.dlq`, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.assertQueue(queue, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-delivery-limit': this.o.deliveryLimit,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': `${queue}.dlq`,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
    await ch.bindQueue(queue, this.o.prefix, topic);
  }

  async subscribe<T = unknown, Tx = undefined>(topic: string, group: string, handler: Handler<T, Tx>, options?: SubscribeOptions<Tx>): Promise<Subscription> {
    this.checkOpen();
    checkTopic(topic);
    checkGroup(group);
    const resolved = resolveSubscribeOptions(options);
    const runner = new HandlerRunner(topic, group, handler, resolved, this.metrics.forSubscription(topic, group), this.o.onError) as HandlerRunner<unknown, unknown>;
    const queue = this.queueName(topic, group);
    let ch: Channel | undefined;
    let tag: string | undefined;
    let attachedTo: ChannelModel | undefined;
    const subscription: RabbitSubscription = {
      topic,
      group,
      runner,
      attach: async (conn) => {
        // Once per connection: subscribe() and a reconnect may both try.
        if (runner.isClosing || attachedTo === conn) return;
        attachedTo = conn;
        try {
          const c = await conn.createChannel();
          c.on('error', (err: unknown) => this.o.onError(err));
          await this.declareGroup(c, topic, group);
          await c.prefetch(resolved.concurrency);
          ch = c;
          tag = (await c.consume(queue, (msg) => {
            if (msg === null) return; // cancelled by the broker (queue deleted); a reconnect re-attaches
            if (runner.isClosing) {
              c.nack(msg, false, true);
              return;
            }
            void runner.run(this.delivery(c, msg, queue));
          }, { noAck: false })).consumerTag;
        } catch (err) {
          attachedTo = undefined;
          throw err;
        }
      },
      close: async () => {
        const drained = runner.drain(this.o.drainTimeout);
        if (ch && tag) await ch.cancel(tag).catch(() => {});
        await drained;
        await ch?.close().catch(() => {});
        this.subscriptions.delete(subscription);
      },
    };
    // In the set first, so that a reconnect while we attach re-attaches it too.
    this.subscriptions.add(subscription);
    try {
      await this.confirmedSetup(`subscribe to ${topic}`, async () => {
        const conn = this.conn;
        if (!conn) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', 'not connected', { retryable: true });
        await subscription.attach(conn);
      });
    } catch (err) {
      this.subscriptions.delete(subscription);
      throw err;
    }
    return subscription;
  }

  private async confirmedSetup(what: string, op: () => Promise<void>): Promise<void> {
    const deadline = Date.now() + this.o.publishTimeout;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (Date.now() >= deadline || this.closed) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', `${what}: RabbitMQ did not accept it within ${this.o.publishTimeout} ms`, { cause: err, retryable: true });
        await sleep(this.backoff.delay(attempt));
      }
    }
  }

  private delivery(ch: Channel, msg: ConsumeMessage, queue: string): Delivery {
    const headers: Headers = { ...msg.properties.headers };
    const prior = Number(headers['x-tandem-attempts'] ?? 0);
    const attempt = prior + Number(headers['x-delivery-count'] ?? 0) + 1;
    const forward = (extra: Headers): Headers => {
      const h: Headers = {};
      for (const [k, v] of Object.entries(headers)) if (!OUR_HEADERS.includes(k)) h[k] = v;
      return { ...h, ...extra };
    };
    const props = { persistent: true, messageId: msg.properties.messageId as string | undefined, contentType: 'application/json' };
    return {
      body: msg.content,
      attempt,
      redelivered: msg.fields.redelivered,
      ack: () => ch.ack(msg),
      retry: async (delay) => {
        const wait = await this.waitQueue(queue, attempt);
        await this.confirmed(`retry in ${queue}`, (pub, done) => pub.sendToQueue(wait, msg.content, { ...props, headers: forward({ 'x-tandem-attempts': attempt }), expiration: String(Math.max(1, Math.round(delay))) }, done));
        ch.ack(msg);
      },
      deadLetter: async (error, attempts) => {
        const h = forward({ 'x-tandem-error': JSON.stringify(error), 'x-tandem-attempts-made': attempts, 'x-tandem-failed-at': new Date().toISOString() });
        await this.confirmed(`dead-letter to ${queue}.dlq`, (pub, done) => pub.sendToQueue(`${queue}.dlq`, msg.content, { ...props, headers: h }, done));
        ch.ack(msg);
      },
    };
  }

  /** The wait queue for retries after `attempt`: messages expire (per-message TTL) back into the group queue. */
  private async waitQueue(queue: string, attempt: number): Promise<string> {
    const name = `${queue}.wait.${attempt}`;
    if (!this.declaredWait.has(name)) {
      await this.withChannel((ch) => ch.assertQueue(name, { durable: true, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue } }));
      this.declaredWait.add(name);
    }
    return name;
  }

  private async withChannel<R>(fn: (ch: Channel) => Promise<R>): Promise<R> {
    const conn = this.conn;
    if (!conn) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', 'RabbitMQ is not connected', { retryable: true });
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /** Takes up to `limit` dead letters without acking; closing the channel puts back those not acked. */
  private async takeDeadLetters(ch: Channel, topic: string, group: string, limit: number): Promise<Array<DeadLetter & { msg: GetMessage }>> {
    const out: Array<DeadLetter & { msg: GetMessage }> = [];
    const dlq = `${this.queueName(topic, group)}.dlq`;
    try {
      await ch.checkQueue(dlq);
    } catch {
      return out;
    }
    while (out.length < limit) {
      const msg = await ch.get(dlq, { noAck: false });
      if (msg === false) break;
      const h: Headers = msg.properties.headers ?? {};
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(msg.content);
      } catch {
        envelope = { id: String(msg.properties.messageId ?? 'undecodable'), topic, time: '', correlationId: '', trace: { traceparent: '' }, headers: {}, payload: msg.content.toString('utf8') };
      }
      const error = typeof h['x-tandem-error'] === 'string'
        ? (JSON.parse(h['x-tandem-error']) as DeadLetter['error'])
        : { message: `dead-lettered by RabbitMQ (${String(h['x-first-death-reason'] ?? 'delivery limit')}): the consumer died or rejected it too often`, name: 'DeliveryLimit' };
      out.push({ msg, envelope, group, error, attempts: Number(h['x-tandem-attempts-made'] ?? h['x-delivery-count'] ?? 0), failedAt: String(h['x-tandem-failed-at'] ?? '') });
    }
    return out;
  }

  async deadLetters(topic: string, group: string, limitOptions?: { limit?: number }): Promise<DeadLetter[]> {
    const options = parseDeadLetterOptions(limitOptions);
    checkTopic(topic);
    checkGroup(group);
    return this.withChannel(async (ch) => (await this.takeDeadLetters(ch, topic, group, options.limit)).map(({ msg: _msg, ...d }) => d));
  }

  async replayDeadLetters(topic: string, group: string, replayOptions?: ReplayOptions): Promise<number> {
    const options = parseReplayOptions(replayOptions);
    checkTopic(topic);
    checkGroup(group);
    const queue = this.queueName(topic, group);
    return this.withChannel(async (ch) => {
      let n = 0;
      for (const d of await this.takeDeadLetters(ch, topic, group, Number.MAX_SAFE_INTEGER)) {
        if (options.ids !== undefined && !options.ids.includes(d.envelope.id)) continue;
        const headers: Headers = {};
        for (const [k, v] of Object.entries(d.msg.properties.headers ?? {})) if (!OUR_HEADERS.includes(k)) headers[k] = v;
        await this.confirmed(`replay to ${queue}`, (pub, done) => pub.sendToQueue(queue, d.msg.content, { persistent: true, messageId: d.envelope.id, contentType: 'application/json', headers }, done));
        ch.ack(d.msg);
        n++;
      }
      return n;
    });
  }

  async stats(): Promise<EventStats> {
    const subscriptions: EventStats['subscriptions'] = {};
    const inFlight = new Map<string, number>();
    for (const s of this.subscriptions) inFlight.set(`${s.topic}/${s.group}`, (inFlight.get(`${s.topic}/${s.group}`) ?? 0) + s.runner.inFlight);
    for (const [key, counts] of this.metrics.subscriptions) {
      const slash = key.lastIndexOf('/');
      const queue = this.queueName(key.slice(0, slash), key.slice(slash + 1));
      const lag = await this.withChannel((ch) => ch.checkQueue(queue)).then((q) => q.messageCount, () => 0);
      subscriptions[key] = this.metrics.snapshot(counts, lag, inFlight.get(key) ?? 0);
    }
    return { published: Object.fromEntries(this.metrics.published), subscriptions };
  }

  /** Deletes the queues of a topic's groups (group, dead letters, wait queues). */
  async deleteTopic(topic: string, groups: readonly string[], maxAttempts = 20): Promise<void> {
    await this.withChannel(async (ch) => {
      for (const g of groups) {
        const q = this.queueName(topic, g);
        for (const name of [q, `${q}.dlq`, ...Array.from({ length: maxAttempts }, (_, i) => `${q}.wait.${i + 1}`)]) await ch.deleteQueue(name);
      }
    });
  }

  /** The current connection (amqplib's `ChannelModel`; undefined while reconnecting), for tests and diagnostics. */
  get connection(): AmqpConnectionLike | undefined {
    return this.conn;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.drainEntry.dispose();
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer.timer);
      this.reconnectTimer.wake();
    }
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    for (const w of this.readyWaiters.splice(0)) w();
    await this.conn?.close().catch(() => {});
    this.conn = undefined;
  }

  private checkOpen(): void {
    if (this.closed) throw new TandemError('TANDEM_ERR_BUS_CLOSED', 'the bus is closed');
  }
}
