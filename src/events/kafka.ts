import { trackForDrain } from '../core/drain.js';
import { TandemError } from '../core/errors.js';
import { loadOptional } from '../core/optional.js';
import { Backoff, untilConfirmed } from './backoff.js';
import type { Bus, DeadLetter, Handler, ReplayOptions, SubscribeOptions, Subscription } from './bus.js';
import { checkGroup, checkTopic, decodeEnvelope, encodeEnvelope, publishPayload, type Envelope, type PublishOptions } from './envelope.js';
import { closeConsumer, KafkaSubscription, type KafkaSubscriptionHost, type OutRecord } from './kafka-subscription.js';
import { SerialSender } from './kafka-sender.js';
import { EventMetrics, type EventStats } from './metrics.js';
import { parseDeadLetterOptions, parseKafkaBusOptions, parseReplayOptions } from './options.js';
import { HandlerRunner, resolveSubscribeOptions } from './runner.js';

type Kafka = typeof import('@platformatic/kafka');
type Producer = import('@platformatic/kafka').Producer<string, Buffer, string, string>;
type Admin = import('@platformatic/kafka').Admin;
type Reader = import('@platformatic/kafka').Consumer;

export interface KafkaBusOptions {
  /** Bootstrap brokers, `host:port`. Default `127.0.0.1:9092`. */
  brokers?: string | string[];
  /** The client id the brokers see (and log). Default `tandem`. */
  name?: string;
  /**
   * Topic and group prefix: a topic is `<prefix>.<topic>`; each group has `<prefix>.<topic>__retry.<group>`
   * and `<prefix>.<topic>__dlq.<group>` and the consumer group `<prefix>.<topic>.<group>`. Default `tandem`.
   */
  prefix?: string;
  /** Partitions of the topics the bus creates: the most consumers of one group that get work. Default 6. */
  partitions?: number;
  /** Replicas of the topics the bus creates. Default: the broker's `default.replication.factor`. */
  replicationFactor?: number;
  /** A consumer not heard from this long leaves its group and its partitions go to the others (ms). Default 10000. */
  sessionTimeout?: number;
  publishTimeout?: number;
  drainTimeout?: number;
  reconnectInitial?: number;
  reconnectMax?: number;
  onError?: (err: unknown) => void;
}

/** A record read back from a topic (dead letters). */
interface StoredRecord {
  offset: bigint;
  key: string | undefined;
  value: Buffer;
  headers: Map<string, string>;
}

const REPLAYED = 'tandem-replayed';

let roundRobin = 0;
/** Longest wait for the answer to one produce request before the producer is replaced. */
const PRODUCE_STALL_MS = 60_000;

function newProducer(kafka: Kafka, base: { clientId: string; bootstrapBrokers: string[]; retries: number; retryDelay: number }): Producer {
  return new kafka.Producer<string, Buffer, string, string>({
    ...base,
    idempotent: true,
    acks: kafka.ProduceAcks.ALL,
    // A key: Java's partitioner (the same partition as from any other Kafka client). No key: round robin.
    partitioner: (message, key) => (key ? kafka.compatibilityPartitioner(message, key) : (roundRobin = (roundRobin + 1) & 0x7fffffff)),
    serializers: { key: kafka.stringSerializer, headerKey: kafka.stringSerializer, headerValue: kafka.stringSerializer },
  });
}

/** Broker answers after which the producer's id and sequence numbers are of no use any more. */
const PRODUCER_STATE_ERRORS = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING']);

/** Searches the client's nested errors (`errors`, `cause`) for one of PRODUCER_STATE_ERRORS. */
function needsNewProducer(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 4) return false;
  const e = err as { apiId?: unknown; errors?: unknown; cause?: unknown };
  if (typeof e.apiId === 'string' && PRODUCER_STATE_ERRORS.has(e.apiId)) return true;
  const inner = [...(Array.isArray(e.errors) ? e.errors : []), e.cause];
  return inner.some((x) => needsNewProducer(x, depth + 1));
}

/** A send not acknowledged in the time it had (it may still be written). */
class OutOfTime extends Error {
  constructor(ms: number) {
    super(`no acknowledgement within ${ms} ms`);
  }
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const str = (b: Buffer | null | undefined): string | undefined => (b == null ? undefined : b.toString('utf8'));

/**
 * Apache Kafka adapter (brokers 3.5 to 4.1, KRaft or ZooKeeper) on `@platformatic/kafka`.
 * An idempotent producer with acks=all; per group a consumer group that commits an offset only
 * when it and every earlier record of its partition have an outcome; retries wait in the group's
 * retry topic (the record carries its attempt and due time), dead letters go to the group's
 * dead-letter topic. Records with the same key go to the same partition and are handled one
 * after another.
 */
export class KafkaBus implements Bus {
  readonly drainName = 'kafka bus';
  /** Open buses are closed by serve()'s drain (core/drain.ts). */
  private readonly drainEntry = trackForDrain(this);
  readonly kind = 'kafka' as const;
  private readonly backoff: Backoff;
  /** What subscriptions use of the bus. */
  private readonly host: KafkaSubscriptionHost;
  private readonly metrics = new EventMetrics();
  private readonly ensured = new Map<string, Promise<void>>();
  private readonly ready = new Set<string>();
  private readonly subscriptions = new Set<KafkaSubscription>();
  private reader: Reader | undefined;
  private closed = false;
  private readonly sender = new SerialSender(async (messages) => {
    const producer = this.producer;
    try {
      // A request that never settles must not hold up every publish after it.
      await this.timed(producer.send({ messages }), PRODUCE_STALL_MS);
    } catch (err) {
      // The client's idempotent producer does not recover its sequence numbers after a leader
      // fails over (the broker then refuses every batch as out of order, for good): a new
      // producer (a new producer id, sequences from 0) takes over, as the Java client does. So
      // it does after a stalled request, which must not run beside the next one (#326).
      if (this.producer === producer && !this.closed && (err instanceof OutOfTime || needsNewProducer(err))) {
        this.producer = newProducer(this.kafka, this.base);
        void producer.close().catch(() => {});
      }
      throw err;
    }
  });

  private constructor(
    private readonly kafka: Kafka,
    private producer: Producer,
    private readonly admin: Admin,
    private readonly o: ReturnType<typeof parseKafkaBusOptions>,
    private readonly base: { clientId: string; bootstrapBrokers: string[]; retries: number; retryDelay: number },
  ) {
    this.backoff = new Backoff(o.reconnectInitial, o.reconnectMax);
    const session = o.sessionTimeout;
    this.host = {
      kafka,
      // More tries than the producer's: a consumer that gives up on a join or a fetch leaves work for the rest of the group.
      consumerOptions: { ...base, retries: 10, retryDelay: Math.max(250, o.reconnectInitial), sessionTimeout: session, heartbeatInterval: Math.max(100, Math.floor(session / 10)), rebalanceTimeout: session * 2, maxWaitTime: 500, autocommit: false },
      backoff: this.backoff,
      onError: (err) => this.o.onError(err),
      sendUntil: (what, record, stop) => this.sendUntil(what, record, stop),
      committed: (groupId, topic, partition) => this.committedOffset(groupId, topic, partition),
      commitPool: admin.connections,
    };
  }

  /** Loads the client on first use and checks that the cluster answers. */
  static async connect(kafkaOptions: KafkaBusOptions = {}): Promise<KafkaBus> {
    // Checked before the client loads: a misspelt option fails the same with or without it.
    const o = parseKafkaBusOptions(kafkaOptions);
    const kafka = await loadOptional('@platformatic/kafka', 'the Kafka adapter', () => import('@platformatic/kafka'));
    const base = { clientId: o.name ?? 'tandem', bootstrapBrokers: typeof o.brokers === 'string' ? [o.brokers] : [...o.brokers], retries: 3, retryDelay: o.reconnectInitial };
    const producer = newProducer(kafka, base);
    const admin = new kafka.Admin(base);
    try {
      await admin.metadata({ topics: [] });
    } catch (err) {
      await Promise.all([producer.close().catch(() => {}), admin.close().catch(() => {})]);
      throw err;
    }
    return new KafkaBus(kafka, producer, admin, o, base);
  }

  topicName(topic: string): string {
    return `${this.o.prefix}.${topic}`;
  }

  retryTopicName(topic: string, group: string): string {
    return `${this.o.prefix}.${topic}__retry.${group}`;
  }

  deadLetterTopicName(topic: string, group: string): string {
    return `${this.o.prefix}.${topic}__dlq.${group}`;
  }

  groupId(topic: string, group: string): string {
    return `${this.o.prefix}.${topic}.${group}`;
  }

  publish<T>(topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>> {
    return publishPayload(this, topic, payload, options);
  }

  /** Resolves once every in-sync replica has the record (acks=all); retries until publishTimeout. */
  async publishEnvelope(envelope: Envelope): Promise<void> {
    this.checkOpen();
    checkTopic(envelope.topic);
    const headers: Record<string, string> = { traceparent: envelope.trace.traceparent, 'tandem-id': envelope.id };
    if (envelope.trace.tracestate !== undefined) headers.tracestate = envelope.trace.tracestate;
    const record: OutRecord = { topic: this.topicName(envelope.topic), value: encodeEnvelope(envelope), headers };
    if (envelope.key !== undefined) record.key = envelope.key;
    await this.confirmed(`publish to ${envelope.topic}`, async (left) => {
      if (!this.ready.has(envelope.topic)) await this.ensureTopic(record.topic, this.o.partitions);
      // All the time left: a record still queued or in flight is never sent a second time by us
      // (under load a short per-try timeout re-sent records that were merely slow, and every copy was written).
      await this.timed(this.send(record), left);
    });
    this.ready.add(envelope.topic);
    this.metrics.countPublished(envelope.topic);
  }

  private send(record: OutRecord): Promise<void> {
    return this.sender.enqueue(record);
  }

  /** Rejects after `ms` (the send itself goes on and may still be written: a publish the caller repeats is a duplicate the inbox absorbs). */
  private timed<T>(p: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new OutOfTime(ms)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  private confirmed(what: string, op: (timeout: number) => Promise<void>): Promise<void> {
    return untilConfirmed({
      what, by: 'acknowledged by Kafka', timeoutMs: this.o.publishTimeout, backoff: this.backoff,
      closed: () => this.closed, final: (err) => err instanceof OutOfTime,
    }, (left) => op(Math.max(200, left)));
  }

  /** A retry or dead letter: written before the record's offset may be committed, so it tries until it is (or the subscription gives up). */
  private async sendUntil(what: string, record: OutRecord, stop: () => boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ensureTopic(record.topic, record.topic.includes('__dlq.') ? 1 : this.o.partitions);
        // Long: a retry or dead letter re-sent while the first copy is merely slow is written twice.
        await this.timed(this.send(record), 30_000);
        return;
      } catch (err) {
        if (stop() || this.closed) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', `${what}: given up, the subscription closed`, { cause: err, retryable: true });
        this.o.onError(err);
        await sleep(this.backoff.delay(attempt));
      }
    }
  }

  /** Creates the topic unless it exists, and waits until every partition has a leader. */
  private ensureTopic(name: string, partitions: number): Promise<void> {
    let p = this.ensured.get(name);
    if (!p) {
      p = (async () => {
        try {
          await this.admin.createTopics({ topics: [name], partitions, replicas: this.o.replicationFactor ?? -1 });
        } catch (err) {
          if (!(await this.partitionsOf(name).catch(() => 0))) throw err; // not "it exists already"
        }
        for (let i = 1; ; i++) {
          const md = await this.admin.metadata({ topics: [name], forceUpdate: true }).catch(() => undefined);
          const t = md?.topics.get(name);
          if (t && t.partitions.length > 0 && t.partitions.every((x) => x.leader >= 0)) return;
          await sleep(Math.min(50 * i, 500));
          if (i > 100) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', `topic ${name}: no leader for every partition`, { retryable: true });
        }
      })();
      this.ensured.set(name, p);
      p.catch(() => this.ensured.delete(name));
    }
    return p;
  }

  /** A group's committed offset of one partition, with the metadata its last commit carried. */
  private async committedOffset(groupId: string, name: string, partition: number): Promise<{ offset: bigint; metadata: string | null }> {
    const [group] = await this.admin.listConsumerGroupOffsets({ groups: [{ groupId, topics: [{ name, partitionIndexes: [partition] }] }] });
    const x = group?.topics.find((t) => t.name === name)?.partitions.find((q) => q.partitionIndex === partition);
    return { offset: x?.committedOffset ?? -1n, metadata: x?.metadata ?? null };
  }

  private async partitionsOf(name: string): Promise<number> {
    const md = await this.admin.metadata({ topics: [name], forceUpdate: true });
    return md.topics.get(name)?.partitionsCount ?? 0;
  }

  /**
   * A group new to a topic starts at its end ("every message published after the group first
   * subscribed"): its offsets are set to the partitions' ends before its first member joins, so
   * that nothing published from now on is skipped while the group forms.
   */
  private async startAtEnd(groupId: string, name: string): Promise<void> {
    const n = await this.partitionsOf(name);
    const indexes = Array.from({ length: n }, (_, i) => i);
    const [committed] = await this.admin.listConsumerGroupOffsets({ groups: [{ groupId, topics: [{ name, partitionIndexes: indexes }] }] });
    const known = new Set<number>();
    for (const t of committed?.topics ?? []) for (const x of t.partitions) if (x.committedOffset >= 0n) known.add(x.partitionIndex);
    const missing = indexes.filter((i) => !known.has(i));
    if (missing.length === 0) return;
    const ends = await this.admin.listOffsets({ topics: [{ name, partitions: missing.map((partitionIndex) => ({ partitionIndex, timestamp: -1n })) }] });
    const partitionOffsets = (ends[0]?.partitions ?? []).map((x) => ({ partition: x.partitionIndex, offset: x.offset }));
    // Fails while the group has members; they set the offsets before they joined, so asking again finds them.
    await this.admin.alterConsumerGroupOffsets({ groupId, topics: [{ name, partitionOffsets }] });
  }

  async subscribe<T = unknown, Tx = undefined>(topic: string, group: string, handler: Handler<T, Tx>, options?: SubscribeOptions<Tx>): Promise<Subscription> {
    this.checkOpen();
    checkTopic(topic);
    checkGroup(group);
    const resolved = resolveSubscribeOptions(options);
    const names = { topic, group, groupId: this.groupId(topic, group), main: this.topicName(topic), retry: this.retryTopicName(topic, group), dlq: this.deadLetterTopicName(topic, group) };
    await this.confirmed(`subscribe to ${topic}`, async () => {
      await this.ensureTopic(names.main, this.o.partitions);
      await this.ensureTopic(names.retry, this.o.partitions);
      await this.ensureTopic(names.dlq, 1);
      await this.startAtEnd(names.groupId, names.main);
    });
    const runner = new HandlerRunner(topic, group, handler, resolved, this.metrics.forSubscription(topic, group), this.o.onError) as HandlerRunner<unknown, unknown>;
    const sub: KafkaSubscription = new KafkaSubscription(this.host, names, runner, this.o.drainTimeout, () => this.subscriptions.delete(sub));
    await this.confirmed(`join group ${names.groupId}`, () => sub.start());
    this.subscriptions.add(sub);
    return sub;
  }

  /** Every record of a (one-partition) topic, read with plain fetches: no group, nothing committed. */
  private async readAll(name: string): Promise<StoredRecord[]> {
    this.reader ??= new this.kafka.Consumer({ ...this.base, groupId: `${this.o.prefix}.reader` });
    const reader = this.reader;
    const md = await reader.metadata({ topics: [name], forceUpdate: true }).catch(() => undefined);
    const t = md?.topics.get(name);
    const leader = t?.partitions[0]?.leader;
    if (!t || leader === undefined || leader < 0) return [];
    const out: StoredRecord[] = [];
    let offset = 0n;
    for (;;) {
      const res = await reader.fetch({ node: leader, maxWaitTime: 0, minBytes: 0, topics: [{ topicId: t.id, partitions: [{ partition: 0, currentLeaderEpoch: -1, fetchOffset: offset, lastFetchedEpoch: -1, partitionMaxBytes: 4 << 20 }] }] });
      const part = res.responses[0]?.partitions[0];
      if (!part) break;
      if (offset < part.logStartOffset) offset = part.logStartOffset;
      const before = offset;
      for (const batch of part.records ?? []) {
        for (const r of batch.records) {
          const at = batch.firstOffset + BigInt(r.offsetDelta);
          if (at < offset) continue;
          const headers = new Map<string, string>();
          for (const [k, v] of r.headers) if (k) headers.set(k.toString('utf8'), str(v) ?? '');
          out.push({ offset: at, key: str(r.key), value: r.value ?? Buffer.alloc(0), headers });
        }
        const next = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
        if (next > offset) offset = next;
      }
      if (offset >= part.highWatermark || offset === before) break;
    }
    return out;
  }

  private async storedDeadLetters(topic: string, group: string): Promise<Array<DeadLetter & { record: StoredRecord }>> {
    const records = await this.readAll(this.deadLetterTopicName(topic, group));
    const replayed = new Set<string>();
    for (const r of records) {
      const of = r.headers.get(REPLAYED);
      if (of !== undefined) replayed.add(of);
    }
    const out: Array<DeadLetter & { record: StoredRecord }> = [];
    for (const r of records) {
      if (r.headers.has(REPLAYED) || replayed.has(String(r.offset))) continue;
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(r.value);
      } catch {
        envelope = { id: `undecodable-${r.offset}`, topic, time: '', correlationId: '', trace: { traceparent: '' }, headers: {}, payload: r.value.toString('utf8') };
      }
      let error: DeadLetter['error'];
      try {
        error = JSON.parse(r.headers.get('tandem-error') ?? '') as DeadLetter['error'];
      } catch {
        error = { message: 'unknown' };
      }
      out.push({ record: r, envelope, group, error, attempts: Number(r.headers.get('tandem-attempts') ?? 0), failedAt: r.headers.get('tandem-failed-at') ?? '' });
    }
    return out;
  }

  async deadLetters(topic: string, group: string, limitOptions?: { limit?: number }): Promise<DeadLetter[]> {
    const options = parseDeadLetterOptions(limitOptions);
    checkTopic(topic);
    checkGroup(group);
    return (await this.storedDeadLetters(topic, group)).slice(0, options.limit).map(({ record: _record, ...d }) => d);
  }

  /**
   * Kafka cannot delete one record: a replayed dead letter is written to the group's retry topic
   * (attempt 1, due now), then a marker naming its offset goes to the dead-letter topic, and
   * listings leave out what a marker names.
   */
  async replayDeadLetters(topic: string, group: string, replayOptions?: ReplayOptions): Promise<number> {
    const options = parseReplayOptions(replayOptions);
    checkTopic(topic);
    checkGroup(group);
    const chosen = (await this.storedDeadLetters(topic, group)).filter((d) => options.ids === undefined || options.ids.includes(d.envelope.id));
    const dlq = this.deadLetterTopicName(topic, group);
    const retry = this.retryTopicName(topic, group);
    for (const { record } of chosen) {
      const headers: Record<string, string> = { 'tandem-attempt': '1', 'tandem-replayed-from': String(record.offset) };
      for (const [k, v] of record.headers) if (!k.startsWith('tandem-')) headers[k] = v;
      await this.confirmed(`replay to ${retry}`, async (timeout) => {
        await this.ensureTopic(retry, this.o.partitions);
        await this.timed(this.send({ topic: retry, ...(record.key === undefined ? {} : { key: record.key }), value: record.value, headers }), timeout);
      });
      await this.confirmed(`replay marker in ${dlq}`, (timeout) => this.timed(this.send({ topic: dlq, value: Buffer.alloc(0), headers: { [REPLAYED]: String(record.offset) } }), timeout));
    }
    return chosen.length;
  }

  /** Lag: per partition of the topic, its end offset minus the group's committed offset. */
  private async lag(topic: string, group: string): Promise<number> {
    const name = this.topicName(topic);
    const n = await this.partitionsOf(name);
    if (n === 0) return 0;
    const indexes = Array.from({ length: n }, (_, i) => i);
    const [committed] = await this.admin.listConsumerGroupOffsets({ groups: [{ groupId: this.groupId(topic, group), topics: [{ name, partitionIndexes: indexes }] }] });
    const at = new Map<number, bigint>();
    for (const t of committed?.topics ?? []) for (const x of t.partitions) at.set(x.partitionIndex, x.committedOffset);
    const ends = await this.admin.listOffsets({ topics: [{ name, partitions: indexes.map((partitionIndex) => ({ partitionIndex, timestamp: -1n })) }] });
    let lag = 0n;
    for (const x of ends[0]?.partitions ?? []) {
      const c = at.get(x.partitionIndex) ?? -1n;
      if (c >= 0n && x.offset > c) lag += x.offset - c;
    }
    return Number(lag);
  }

  async stats(): Promise<EventStats> {
    const subscriptions: EventStats['subscriptions'] = {};
    const inFlight = new Map<string, number>();
    for (const s of this.subscriptions) inFlight.set(`${s.topic}/${s.group}`, (inFlight.get(`${s.topic}/${s.group}`) ?? 0) + s.inFlight);
    for (const [key, counts] of this.metrics.subscriptions) {
      const slash = key.lastIndexOf('/');
      const lag = await this.lag(key.slice(0, slash), key.slice(slash + 1)).catch(() => 0);
      subscriptions[key] = this.metrics.snapshot(counts, lag, inFlight.get(key) ?? 0);
    }
    return { published: Object.fromEntries(this.metrics.published), subscriptions };
  }

  /** Deletes a topic, its groups' retry and dead-letter topics, and the groups. */
  async deleteTopic(topic: string, groups: readonly string[]): Promise<void> {
    this.ready.delete(topic);
    const names = [this.topicName(topic), ...groups.flatMap((g) => [this.retryTopicName(topic, g), this.deadLetterTopicName(topic, g)])];
    for (const n of names) this.ensured.delete(n);
    await this.admin.deleteTopics({ topics: names }).catch(() => {});
    await this.admin.deleteGroups({ groups: groups.map((g) => this.groupId(topic, g)) }).catch(() => {});
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.drainEntry.dispose();
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    await Promise.all([this.producer.close().catch(() => {}), this.admin.close().catch(() => {}), this.reader ? closeConsumer(this.reader) : undefined]);
  }

  private checkOpen(): void {
    if (this.closed) throw new TandemError('TANDEM_ERR_BUS_CLOSED', 'the bus is closed');
  }
}
