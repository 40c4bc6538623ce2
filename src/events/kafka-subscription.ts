import { TandemError } from '../core/errors.js';
import type { Subscription } from './bus.js';
import type { Backoff } from './backoff.js';
import { commitWithWindow } from './kafka-commit.js';
import { PartitionProgress } from './kafka-offsets.js';
import { decodeWindow } from './kafka-window.js';
import type { Delivery, HandlerRunner } from './runner.js';

type Kafka = typeof import('@platformatic/kafka');
type Consumer = import('@platformatic/kafka').Consumer<string, Buffer, string, string>;
type Stream = import('@platformatic/kafka').MessagesStream<string, Buffer, string, string>;
type Record_ = import('@platformatic/kafka').Message<string, Buffer, string, string>;
type GroupJoin = import('@platformatic/kafka').ConsumerGroupJoinPayload;

/** A record to produce: key and header values are strings, the value the envelope's bytes. */
export interface OutRecord {
  topic: string;
  key?: string;
  value: Buffer;
  headers: Record<string, string>;
}

/** What a subscription needs from its bus. */
export interface KafkaSubscriptionHost {
  /** The loaded `@platformatic/kafka` module (typed `unknown` here: tandem's declarations never name an optional peer's types). */
  readonly kafka: unknown;
  readonly consumerOptions: Record<string, unknown>;
  readonly backoff: Backoff;
  readonly onError: (err: unknown) => void;
  /** Produces with acks=all, retrying until it is written or `stop()` says to give up. */
  sendUntil(what: string, record: OutRecord, stop: () => boolean): Promise<void>;
  /** Connections for commits (kafka-commit.ts): the admin client's, never held by a fetch. */
  readonly commitPool: unknown;
  /** The group's committed offset of a partition and its metadata (-1 and null: none). */
  committed(groupId: string, topic: string, partition: number): Promise<{ offset: bigint; metadata: string | null }>;
}

export interface KafkaSubscriptionNames {
  topic: string;
  group: string;
  groupId: string;
  main: string;
  retry: string;
  dlq: string;
}

/** Headers tandem reads on the retry topic; never forwarded from one hop to the next. */
const OURS = new Set(['tandem-attempt', 'tandem-due', 'tandem-error', 'tandem-attempts', 'tandem-failed-at', 'tandem-replayed-from']);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Closable {
  close(force: boolean, callback: (err?: Error | null) => void): void;
  readonly closed: boolean;
  memberId: string | null;
}

/**
 * Closes a consumer (leaving its group), forcing its streams shut; never rejects. When leaving
 * fails (its coordinator is gone or moved: the client never looks it up again) the client keeps
 * the consumer and its connections open (@platformatic/kafka 1.35, consumer.js `close()`), so it
 * is closed again without the LeaveGroup request, which it skips when it has no member id.
 */
export async function closeConsumer(c: Closable): Promise<void> {
  const failed = await new Promise<Error | null | undefined>((resolve) => c.close(true, resolve));
  if (!failed || c.closed) return;
  c.memberId = null;
  await new Promise<void>((resolve) => c.close(true, () => resolve()));
}

/**
 * One subscription: a consumer of the group on the topic and on the group's retry topic. Each
 * record is handed to the shared runner; its offset is committed once it and every record
 * before it in its partition have an outcome (ack, retry written, dead letter written). Records
 * with the same key run one after another, in offset order; others run concurrently.
 */
export class KafkaSubscription implements Subscription {
  readonly topic: string;
  readonly group: string;
  private consumer: Consumer | undefined;
  private stream: Stream | undefined;
  private readonly progress = new Map<string, PartitionProgress>();
  /** The last running or waiting record of each key: the next one with that key starts after it. */
  private readonly keyTails = new Map<string, Promise<void>>();
  /** Records waiting for their key or their retry time (not holding a handler slot). */
  private waiting = 0;
  private readonly waitingDone: Array<() => void> = [];
  /** Records counted as delivered whose start is being committed or that wait for a handler slot (at most `4 × concurrency`). */
  private readonly ready = new Map<object, Promise<void>>();
  private readonly readyDone: Array<() => void> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Woken whenever a record finishes (or the subscription closes): the fetch loop may be waiting for a partition's commit point. */
  private progressWaiters: Array<() => void> = [];
  /** Handlers waiting for the commit that records their start (kafka-window.ts). */
  private startWaiters: Array<{ p: PartitionProgress; version: number; resolve: (ours: boolean) => void }> = [];
  private committing: Promise<void> | undefined;
  private commitAgain = false;
  private loop: Promise<void> | undefined;
  /** Bumped for each new member (consumer): what waits for the old one's records stops waiting. */
  private member = 0;
  /** Consumers that left their group for good (see watch()): never given a stream again. */
  private readonly left = new WeakSet<Consumer>();
  /** close() began: no record starts any more, even one whose start was committed. */
  private closing = false;
  private stopped = false;

  constructor(
    private readonly host: KafkaSubscriptionHost,
    readonly names: KafkaSubscriptionNames,
    readonly runner: HandlerRunner<unknown, unknown>,
    private readonly drainTimeout: number,
    private readonly onClosed: () => void,
  ) {
    this.topic = names.topic;
    this.group = names.group;
  }

  /** Joins the group and starts fetching; resolves once the stream is open. */
  async start(): Promise<void> {
    this.stream = await this.open();
    this.loop = this.run(this.stream);
  }

  /**
   * A stream on the current consumer, or on a new one when there is none or it is no longer in
   * its group: a new member costs the whole group a rebalance, so a stream that failed (a broker
   * away for longer than the client retries) is reopened on the same member when it can be.
   */
  private async open(): Promise<Stream> {
    const current = this.consumer;
    if (current?.isActive() && !this.left.has(current)) return this.consume(current);
    if (current) {
      this.consumer = undefined;
      this.forget();
      await closeConsumer(current);
    }
    const kafka = this.host.kafka as Kafka;
    const consumer = new kafka.Consumer<string, Buffer, string, string>({
      ...this.host.consumerOptions,
      groupId: this.names.groupId,
      deserializers: { key: kafka.stringDeserializer, headerKey: kafka.stringDeserializer, headerValue: kafka.stringDeserializer },
    } as import('@platformatic/kafka').ConsumerOptions<string, Buffer, string, string>);
    consumer.on('consumer:group:join', (p: GroupJoin) => {
      if (consumer === this.consumer) this.assigned(p);
    });
    this.watch(consumer);
    this.consumer = consumer;
    try {
      return await this.consume(consumer);
    } catch (err) {
      this.consumer = undefined;
      await closeConsumer(consumer);
      throw err;
    }
  }

  private consume(consumer: Consumer): Promise<Stream> {
    return consumer.consume({ topics: [this.names.main, this.names.retry], mode: 'committed', fallbackMode: 'earliest', autocommit: false });
  }

  /**
   * Notices a consumer that has left its group for good. In @platformatic/kafka 1.35
   * (consumer.js `#heartbeat`) any failed heartbeat first cancels the heartbeat timer: one
   * that failed with anything but a rebalance (its retries used up against a coordinator that
   * is down or moved, or one request timed out) emits 'consumer:heartbeat:error' and never
   * schedules another, since the timer it refreshes is gone; one that asked for a rejoin whose
   * every try failed (a JoinGroup timing out is not retried) emits 'error', an uncaught
   * exception without a listener. Either way isActive() stays false, the group drops the
   * member after its session timeout, and its message stream goes on fetching the old
   * assignment, whose commits the coordinator refuses: the subscription would stall. (The first
   * is fixed upstream by platformatic/kafka#376, which 1.35 does not have.)
   */
  private watch(consumer: Consumer): void {
    consumer.on('error', (err: unknown) => this.lost(consumer, 'it could not rejoin its group', err));
    consumer.on('consumer:heartbeat:error', (p: { error?: unknown }) => {
      // A client that schedules the next heartbeat after a failed one is still active here.
      if (!consumer.isActive()) this.lost(consumer, 'a heartbeat failed and the client stopped sending them', p.error);
    });
  }

  /** Reports a consumer that left its group and has the run loop replace it (after its backoff). */
  private lost(consumer: Consumer, why: string, cause: unknown): void {
    if (consumer !== this.consumer || this.left.has(consumer) || this.closing) return;
    this.left.add(consumer);
    this.host.onError(new TandemError('TANDEM_ERR_CONSUMER_LEFT_GROUP', `Kafka consumer of group ${this.names.groupId} left the group (${why}): a new consumer joins in its place; the records it had not finished are redelivered`, { cause, retryable: true }));
    this.forget();
    void this.stream?.close().catch(() => {});
  }

  /** A new member: what the old one had taken is redelivered to the group, and nothing waits for it any more. */
  private forget(): void {
    this.member++;
    this.progress.clear();
    this.wakeStarters();
    for (const w of this.progressWaiters.splice(0)) w();
    for (const w of this.readyDone.splice(0)) w();
    for (const w of this.waitingDone.splice(0)) w();
  }

  /** A new generation: forget partitions that went to another member (their running records will not be committed by us). */
  private assigned(p: GroupJoin): void {
    const keep = new Set<string>();
    for (const a of p.assignments ?? []) for (const partition of a.partitions) keep.add(`${a.topic}:${partition}`);
    for (const key of this.progress.keys()) if (!keep.has(key)) this.progress.delete(key);
    this.wakeStarters();
    for (const w of this.progressWaiters.splice(0)) w();
  }

  /**
   * Reads the stream; when it fails, open() gives another (on the same member if it still is
   * one), and so it does, on a new member, when its consumer left the group (lost()).
   */
  private async run(first: Stream): Promise<void> {
    let stream: Stream | undefined = first;
    let failures = 0;
    while (!this.runner.isClosing) {
      try {
        stream ??= this.stream = await this.open();
        const consumer = this.consumer!;
        // One that left its group (lost()), even while the stream was being opened, is replaced after the backoff.
        if (!this.left.has(consumer)) {
          for await (const record of stream as AsyncIterable<Record_>) {
            failures = 0;
            if (this.runner.isClosing || this.left.has(consumer)) break;
            await this.accept(record);
          }
        }
        if (this.runner.isClosing) break;
        if (!this.left.has(consumer)) throw new TandemError('TANDEM_ERR_INTERNAL', 'the Kafka message stream ended while the subscription was open (it is reopened)');
      } catch (err) {
        if (this.runner.isClosing) break;
        this.host.onError(err);
      }
      const failed = stream;
      stream = undefined;
      await failed?.close().catch(() => {});
      await sleep(this.host.backoff.delay(++failures));
    }
  }

  /** Is the partition assigned to this member now? Records fetched before a rebalance took it away are left to its new owner. */
  private owns(topic: string, partition: number): boolean {
    return this.consumer?.assignments?.some((a) => a.topic === topic && a.partitions.includes(partition)) ?? false;
  }

  private async accept(record: Record_): Promise<void> {
    const pkey = `${record.topic}:${record.partition}`;
    const member = this.member;
    let p = this.progress.get(pkey);
    if (!p) {
      if (!this.owns(record.topic, record.partition)) return;
      const prior = await this.priorWindow(record.topic, record.partition);
      if (prior === undefined || this.member !== member || this.progress.has(pkey) || !this.owns(record.topic, record.partition)) return;
      p = new PartitionProgress(record.topic, record.partition, prior);
      p.committed = record.offset;
      p.carefulUntil = record.offset + BigInt(this.runner.options.concurrency * 4);
      this.progress.set(pkey, p);
    }
    const retried = record.topic === this.names.retry;
    // Bounds what a crash or a rebalance hands to the next owner again: a partition runs at most
    // `4 × concurrency` records past its oldest unfinished one (the commit point); one slow
    // handler then pauses the subscription instead of letting thousands finish uncommittable.
    // A partition taken away meanwhile ends the wait: its records that had not started never
    // will here, so its commit point would never move again (the new owner has them).
    const ahead = BigInt(this.runner.options.concurrency * 4);
    const ours = () => this.progress.get(pkey) === p;
    while (!retried && record.offset - p.commitPoint >= ahead && p.next >= 0n && ours() && !this.runner.isClosing) await new Promise<void>((r) => this.progressWaiters.push(r));
    if (this.runner.isClosing || !ours() || !p.take(record.offset)) return;
    if (p.wasDone(record.offset)) {
      // It had its outcome under the partition's previous owner, which could not commit past an earlier record.
      this.finish(p, record.offset);
      return;
    }
    const attempt = retried ? Number(record.headers.get('tandem-attempt') ?? 1) || 1 : 1;
    const due = retried ? Number(record.headers.get('tandem-due') ?? 0) || 0 : 0;
    const key = record.key || undefined;
    const prev = key === undefined ? undefined : this.keyTails.get(key);
    const wait = due - Date.now();
    const { delivery, mark, unmark } = this.delivery(p, record, attempt);
    // A record started before without an outcome runs alone in its partition: the records before
    // it finish first, the ones after it wait, so that if it is what killed the last consumer,
    // only its own count goes up the next time, not its neighbours' (the first crash counted them).
    const suspect = p.suspect(record.offset);
    const barrier = p.barrier;
    let release: (() => void) | undefined;
    if (suspect) {
      const mine = new Promise<void>((r) => (release = r));
      p.barrier = mine;
      void mine.then(() => {
        if (p.barrier === mine) p.barrier = undefined;
      });
    }
    if (prev === undefined && wait <= 0 && barrier === undefined && !suspect) {
      // Counted as delivered now: its start is committed while it waits for a handler slot, so
      // that the commit's round trip overlaps the handlers running (a broker counts what it
      // prefetched the same way). At most `4 × concurrency` records wait so; then the stream pauses.
      if (!mark()) return;
      const token = {};
      const run = (async () => {
        let go = false;
        try {
          if (await delivery.begin!()) {
            const slot = this.runner.slot();
            go = slot === true || (slot !== false && (await slot));
          }
          if (!go) unmark(); // closing: left uncommitted, redelivered to the group without this count
        } finally {
          this.ready.delete(token);
          this.readyDone.shift()?.();
        }
        if (go) await this.runner.run(delivery);
      })();
      this.ready.set(token, run);
      this.track(key, run);
      while (this.ready.size >= this.runner.options.concurrency * 4 && this.member === member && !this.runner.isClosing) await new Promise<void>((r) => this.readyDone.push(r));
      return;
    }
    // Waits for its key or its time without a handler slot; the stream pauses while too many wait.
    this.waiting++;
    const later = (async () => {
      if (wait > 0) await this.delay(wait);
      if (prev) await prev;
      if (barrier) await barrier;
      if (suspect) {
        const pkey = `${p.topic}:${p.partition}`;
        while (p.commitPoint < record.offset && this.progress.get(pkey) === p && !this.runner.isClosing) await new Promise<void>((r) => this.progressWaiters.push(r));
      }
      if (this.runner.isClosing) return;
      const slot = this.runner.slot();
      if (slot !== true && !(slot !== false && (await slot))) return;
      await this.runner.run(delivery);
    })().finally(() => {
      release?.();
      this.waiting--;
      this.waitingDone.shift()?.();
    });
    this.track(key, later);
    while (this.waiting >= this.runner.options.concurrency * 4 && this.member === member && !this.runner.isClosing) await new Promise<void>((r) => this.waitingDone.push(r));
  }

  private track(key: string | undefined, run: Promise<void>): void {
    if (key === undefined) return;
    this.keyTails.set(key, run);
    void run.then(() => {
      if (this.keyTails.get(key) === run) this.keyTails.delete(key);
    });
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /**
   * The delivery window the partition's previous owner committed, read when this member first
   * sees a record of it (retried while the broker does not answer; undefined once the partition
   * is no longer ours or the subscription closes).
   */
  private async priorWindow(topic: string, partition: number): Promise<Map<bigint, number> | undefined> {
    for (let failures = 0; ; ) {
      try {
        const c = await this.host.committed(this.names.groupId, topic, partition);
        return decodeWindow(c.offset, c.metadata);
      } catch (err) {
        if (this.runner.isClosing || !this.owns(topic, partition)) return undefined;
        this.host.onError(err);
        await sleep(this.host.backoff.delay(++failures));
      }
    }
  }

  /** Resolves true once a commit carried `version` of the partition, false if the partition is no longer ours. */
  private durable(p: PartitionProgress, version: number): boolean | Promise<boolean> {
    if (this.closing || this.progress.get(`${p.topic}:${p.partition}`) !== p) return false;
    if (p.durable >= version) return true;
    return new Promise((resolve) => this.startWaiters.push({ p, version, resolve }));
  }

  private wakeStarters(): void {
    if (this.startWaiters.length === 0) return;
    const still: typeof this.startWaiters = [];
    for (const w of this.startWaiters) {
      if (this.closing || this.progress.get(`${w.p.topic}:${w.p.partition}`) !== w.p) w.resolve(false);
      else if (w.p.durable >= w.version) w.resolve(true);
      else still.push(w);
    }
    this.startWaiters = still;
  }

  /**
   * The delivery of a record, and `mark()`, which counts it as started (kafka-window.ts) and
   * has the count committed; the delivery's `begin()` marks it unless marked already and
   * resolves once that commit is acknowledged. `unmark()` takes the count back.
   */
  private delivery(p: PartitionProgress, record: Record_, attempt: number): { delivery: Delivery; mark: () => boolean; unmark: () => void } {
    const forward: Record<string, string> = {};
    for (const [k, v] of record.headers) if (!OURS.has(k) && v !== undefined) forward[k] = v;
    const out = (topic: string, headers: Record<string, string>): Parameters<KafkaSubscriptionHost['sendUntil']>[1] => ({
      topic,
      ...(record.key ? { key: record.key } : {}),
      value: record.value ?? Buffer.alloc(0),
      headers: { ...forward, ...headers },
    });
    const stop = () => this.stopped;
    // Kafka keeps no delivery count: ours is in the commit metadata (kafka-window.ts), written before the handler runs.
    let starts = 0;
    let version = 0;
    const ours = () => this.progress.get(`${p.topic}:${p.partition}`) === p;
    const mark = (): boolean => {
      if (starts > 0) return true;
      if (!ours()) return false;
      starts = p.start(record.offset);
      version = p.version;
      void this.commitSoon();
      return true;
    };
    const unmark = (): void => {
      if (starts > 0 && ours()) p.unstart(record.offset);
      starts = 0;
    };
    // Deliveries that ended without an outcome (a crash, a rebalance mid-handler) count as attempts, as on NATS and RabbitMQ.
    const current = () => attempt + Math.max(1, starts) - 1;
    const delivery: Delivery = {
      body: record.value ?? Buffer.alloc(0),
      get attempt() {
        return current();
      },
      get redelivered() {
        return starts > 1;
      },
      begin: () => {
        if (!mark()) return false;
        if (record.offset >= p.carefulUntil) return true;
        const ok = this.durable(p, version);
        if (ok === true) return true;
        if (ok === false) {
          unmark();
          return false;
        }
        return ok.then((yes) => {
          if (!yes) unmark(); // closing, or the partition went elsewhere (then there is nothing to take back)
          return yes;
        });
      },
      ack: () => this.finish(p, record.offset),
      retry: async (delayMs) => {
        const h = { 'tandem-attempt': String(current() + 1), 'tandem-due': String(Date.now() + Math.round(delayMs)) };
        await this.host.sendUntil(`retry to ${this.names.retry}`, out(this.names.retry, h), stop);
        this.finish(p, record.offset);
      },
      deadLetter: async (error, attempts) => {
        const h = { 'tandem-error': JSON.stringify(error), 'tandem-attempts': String(attempts), 'tandem-failed-at': new Date().toISOString() };
        await this.host.sendUntil(`dead-letter to ${this.names.dlq}`, out(this.names.dlq, h), stop);
        this.finish(p, record.offset);
      },
    };
    return { delivery, mark, unmark };
  }

  private finish(p: PartitionProgress, offset: bigint): void {
    p.finish(offset);
    for (const w of this.progressWaiters.splice(0)) w();
    if (this.progress.get(`${p.topic}:${p.partition}`) === p) this.commitSoon();
  }

  /** One commit at a time, of every partition that moved; progress made meanwhile goes in the next one. */
  private commitSoon(): Promise<void> {
    if (this.committing) {
      this.commitAgain = true;
      return this.committing;
    }
    this.committing = (async () => {
      let failures = 0;
      do {
        this.commitAgain = false;
        const consumer = this.consumer;
        const moved = [...this.progress.values()].filter((p) => p.dirty).map((p) => ({ p, offset: p.commitPoint, version: p.version }));
        if (!consumer || moved.length === 0) break;
        try {
          await commitWithWindow(this.host.kafka, consumer, this.host.commitPool, moved.map(({ p, offset }) => ({ topic: p.topic, partition: p.partition, offset, metadata: p.window(offset) })));
          for (const { p, offset, version } of moved) {
            if (offset > p.committed) p.committed = offset;
            if (version > p.durable) p.durable = version;
          }
          failures = 0;
          this.wakeStarters();
        } catch (err) {
          // A rebalance or a broker away: the next generation's assignment or the next try settles it.
          this.wakeStarters();
          if (this.stopped) break;
          this.host.onError(err);
          await sleep(this.host.backoff.delay(++failures));
          this.commitAgain = true;
        }
      } while (this.commitAgain && !this.stopped);
      this.committing = undefined;
    })();
    return this.committing;
  }

  get inFlight(): number {
    return this.runner.inFlight;
  }

  /** Stops fetching, waits for running handlers (up to drainTimeout), commits what they finished, then leaves the group. */
  async close(): Promise<void> {
    if (this.stopped) return;
    const drained = this.runner.drain(this.drainTimeout);
    this.closing = true;
    this.wakeStarters();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const w of this.waitingDone.splice(0)) w();
    for (const w of this.readyDone.splice(0)) w();
    for (const w of this.progressWaiters.splice(0)) w();
    await drained;
    // Records counted but not run take their counts back before the last commit.
    await Promise.all(this.ready.values());
    // Tried for drainTimeout, and at least as long as a rebalance may refuse it (the consumers'
    // rebalanceTimeout): a coordinator that never accepts it (a member that left the group, a
    // coordinator gone) must not hold close() for ever; what it misses is redelivered.
    const bound = Math.max(this.drainTimeout, Number(this.host.consumerOptions.rebalanceTimeout) || 0);
    let timer: NodeJS.Timeout | undefined;
    const last = (async () => {
      await this.committing;
      await this.commitSoon();
    })();
    await Promise.race([last, new Promise<void>((r) => (timer = setTimeout(r, bound)))]);
    clearTimeout(timer);
    this.stopped = true;
    this.wakeStarters();
    await this.stream?.close().catch(() => {});
    await this.loop;
    if (this.consumer) await closeConsumer(this.consumer);
    this.onClosed();
  }
}
