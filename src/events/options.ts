import { parseOptions, type OptionProblem, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';
import type { SubscribeOptions, ReplayOptions } from './bus.js';
import { EVENTS_DEFAULTS } from './defaults.js';
import type { MemoryBusOptions } from './memory.js';
import type { NatsBusOptions } from './nats.js';
import type { RabbitMqBusOptions } from './rabbitmq.js';
import type { KafkaBusOptions } from './kafka.js';
import type { RedisInboxOptions } from './inbox-redis.js';
import type { PostgresInboxOptions } from './inbox-postgres.js';
import type { PostgresOutboxOptions, RelayOptions } from './outbox.js';

/*
 * Every options object of the events API: one defaults object and one spec each, checked once
 * where the object is made (unknown keys with a did-you-mean hint, types, ranges) and frozen.
 */

const noop = (): void => {};
const SQL_NAME_RULE = rules.pattern(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier (letters, digits, _; at most 63)');
const reconnect = { reconnectInitial: rules.duration(1), reconnectMax: rules.duration(1) };
/** What both broker buses take alike: their defaults and their rules. */
const brokerDefaults = {
  publishTimeout: EVENTS_DEFAULTS.publishTimeout,
  drainTimeout: EVENTS_DEFAULTS.drainTimeout,
  reconnectInitial: EVENTS_DEFAULTS.reconnectInitial,
  reconnectMax: EVENTS_DEFAULTS.reconnectMax,
  onError: noop as (err: unknown) => void,
};
const brokerRules = { name: rules.string, publishTimeout: rules.duration(1), drainTimeout: rules.duration(0), ...reconnect, onError: rules.func };
const reconnectOrder = (o: { reconnectInitial: number; reconnectMax: number }): OptionProblem[] =>
  o.reconnectInitial <= o.reconnectMax ? [] : [{ path: 'options.reconnectMax', message: `must be at least reconnectInitial (${o.reconnectInitial}), got ${o.reconnectMax}` }];

export const DEFAULT_MEMORY_BUS_OPTIONS = rules.defaults({ drainTimeout: EVENTS_DEFAULTS.drainTimeout });
export function parseMemoryBusOptions(options: unknown): Readonly<MemoryBusOptions & typeof DEFAULT_MEMORY_BUS_OPTIONS> {
  return parseOptions('new MemoryBus()', options, { clock: rules.methods('now', 'setTimeout'), drainTimeout: rules.duration(0) }, DEFAULT_MEMORY_BUS_OPTIONS);
}

export const DEFAULT_NATS_BUS_OPTIONS = rules.defaults({
  servers: 'nats://127.0.0.1:4222' as string | string[],
  subjectPrefix: 'tandem',
  streamPrefix: 'TANDEM',
  ...brokerDefaults,
  maxAge: EVENTS_DEFAULTS.natsMaxAge,
  duplicateWindow: EVENTS_DEFAULTS.natsDuplicateWindow,
  ackWait: EVENTS_DEFAULTS.natsAckWait,
});
const NATS_SPEC: OptionSpec = {
  servers: rules.stringOrStrings,
  subjectPrefix: rules.pattern(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'NATS subject tokens (letters, digits, _ and -, dot-separated)'),
  streamPrefix: rules.pattern(/^[A-Za-z0-9_-]{1,100}$/, 'a stream name part (letters, digits, _ and -)'),
  ...brokerRules,
  maxAge: rules.duration(1),
  duplicateWindow: rules.duration(1),
  ackWait: rules.duration(1),
};
export function parseNatsBusOptions(options: unknown): Readonly<NatsBusOptions & typeof DEFAULT_NATS_BUS_OPTIONS> {
  return parseOptions<NatsBusOptions & typeof DEFAULT_NATS_BUS_OPTIONS>('NatsBus.connect()', options, NATS_SPEC, DEFAULT_NATS_BUS_OPTIONS, [], reconnectOrder);
}

export const DEFAULT_RABBITMQ_BUS_OPTIONS = rules.defaults({
  url: 'amqp://guest:guest@127.0.0.1:5672',
  prefix: 'tandem',
  ...brokerDefaults,
  deliveryLimit: EVENTS_DEFAULTS.rabbitDeliveryLimit,
});
const RABBITMQ_SPEC: OptionSpec = {
  url: rules.string,
  prefix: rules.pattern(/^[A-Za-z0-9_.-]{1,200}$/, 'an exchange name (letters, digits, _ . and -)'),
  ...brokerRules,
  deliveryLimit: rules.integer(1, 10_000),
};
export function parseRabbitMqBusOptions(options: unknown): Readonly<RabbitMqBusOptions & typeof DEFAULT_RABBITMQ_BUS_OPTIONS> {
  return parseOptions<RabbitMqBusOptions & typeof DEFAULT_RABBITMQ_BUS_OPTIONS>('RabbitMqBus.connect()', options, RABBITMQ_SPEC, DEFAULT_RABBITMQ_BUS_OPTIONS, [], reconnectOrder);
}

export const DEFAULT_KAFKA_BUS_OPTIONS = rules.defaults({
  brokers: '127.0.0.1:9092' as string | string[],
  prefix: 'tandem',
  ...brokerDefaults,
  partitions: EVENTS_DEFAULTS.kafkaPartitions,
  sessionTimeout: EVENTS_DEFAULTS.kafkaSessionTimeout,
});
const KAFKA_SPEC: OptionSpec = {
  brokers: rules.stringOrStrings,
  // Kafka topic characters; no '_' (tandem's own suffixes use "__").
  prefix: rules.pattern(/^[A-Za-z0-9.-]{1,60}$/, 'a Kafka topic name part (letters, digits, . and -)'),
  ...brokerRules,
  partitions: rules.integer(1, 10_000),
  replicationFactor: rules.integer(1, 100),
  sessionTimeout: rules.duration(1_000),
};
export function parseKafkaBusOptions(options: unknown): Readonly<KafkaBusOptions & typeof DEFAULT_KAFKA_BUS_OPTIONS> {
  return parseOptions<KafkaBusOptions & typeof DEFAULT_KAFKA_BUS_OPTIONS>('KafkaBus.connect()', options, KAFKA_SPEC, DEFAULT_KAFKA_BUS_OPTIONS, [], reconnectOrder);
}

export const DEFAULT_SUBSCRIBE_OPTIONS = rules.defaults({ concurrency: EVENTS_DEFAULTS.concurrency, maxAttempts: EVENTS_DEFAULTS.maxAttempts });
const SUBSCRIBE_SPEC: OptionSpec = {
  concurrency: rules.integer(1, 10_000),
  maxAttempts: rules.integer(1, 1000),
  backoff: rules.nested({ initial: rules.duration(1), max: rules.duration(1) }),
  inbox: rules.methods('once'),
};
export function parseSubscribeOptions<Tx>(options: unknown): Readonly<SubscribeOptions<Tx> & typeof DEFAULT_SUBSCRIBE_OPTIONS> {
  return parseOptions<SubscribeOptions<Tx> & typeof DEFAULT_SUBSCRIBE_OPTIONS>('subscribe()', options, SUBSCRIBE_SPEC, DEFAULT_SUBSCRIBE_OPTIONS, [], (o) => {
    const { initial, max } = o.backoff ?? {};
    return initial === undefined || max === undefined || initial <= max ? [] : [{ path: 'options.backoff.max', message: `must be at least backoff.initial (${initial}), got ${max}` }];
  });
}

const LIMIT_SPEC: OptionSpec = { limit: rules.integer(1) };
export function parseDeadLetterOptions(options: unknown): Readonly<{ limit: number }> {
  return parseOptions('deadLetters()', options, LIMIT_SPEC, { limit: 100 });
}
const REPLAY_SPEC: OptionSpec = { ids: rules.strings };
export function parseReplayOptions(options: unknown): Readonly<ReplayOptions> {
  return parseOptions('replayDeadLetters()', options, REPLAY_SPEC);
}

export const DEFAULT_REDIS_INBOX_OPTIONS = rules.defaults({
  url: 'redis://127.0.0.1:6379',
  prefix: 'tandem:inbox',
  retention: EVENTS_DEFAULTS.inboxRetention,
  lease: EVENTS_DEFAULTS.inboxLease,
});
const REDIS_INBOX_SPEC: OptionSpec = {
  url: rules.string,
  client: rules.methods('set', 'get', 'multi', 'eval'),
  prefix: rules.string,
  retention: rules.duration(1),
  lease: rules.duration(1),
};
export function parseRedisInboxOptions(options: unknown): Readonly<RedisInboxOptions & typeof DEFAULT_REDIS_INBOX_OPTIONS> {
  return parseOptions('RedisInbox.connect()', options, REDIS_INBOX_SPEC, DEFAULT_REDIS_INBOX_OPTIONS);
}

export const DEFAULT_POSTGRES_INBOX_OPTIONS = rules.defaults({ table: 'tandem_inbox', retention: EVENTS_DEFAULTS.inboxRetention });
const POSTGRES_INBOX_SPEC: OptionSpec = {
  connectionString: rules.string,
  pool: rules.methods('query', 'connect'),
  table: SQL_NAME_RULE,
  retention: rules.duration(1),
};
export function parsePostgresInboxOptions(options: unknown): Readonly<PostgresInboxOptions & typeof DEFAULT_POSTGRES_INBOX_OPTIONS> {
  return parseOptions('PostgresInbox.connect()', options, POSTGRES_INBOX_SPEC, DEFAULT_POSTGRES_INBOX_OPTIONS);
}

export const DEFAULT_POSTGRES_OUTBOX_OPTIONS = rules.defaults({ table: 'tandem_outbox' });
const POSTGRES_OUTBOX_SPEC: OptionSpec = {
  connectionString: rules.string,
  pool: rules.methods('query', 'connect'),
  table: SQL_NAME_RULE,
};
export function parsePostgresOutboxOptions(options: unknown): Readonly<PostgresOutboxOptions & typeof DEFAULT_POSTGRES_OUTBOX_OPTIONS> {
  return parseOptions('PostgresOutbox.connect()', options, POSTGRES_OUTBOX_SPEC, DEFAULT_POSTGRES_OUTBOX_OPTIONS);
}

export const DEFAULT_RELAY_OPTIONS = rules.defaults({
  pollInterval: EVENTS_DEFAULTS.outboxPollInterval,
  batchSize: EVENTS_DEFAULTS.outboxBatchSize,
  retention: EVENTS_DEFAULTS.outboxRetention,
  onError: noop as (err: unknown) => void,
});
const RELAY_SPEC: OptionSpec = {
  pollInterval: rules.duration(1),
  batchSize: rules.integer(1, 100_000),
  retention: rules.duration(1),
  onError: rules.func,
};
export function parseRelayOptions(options: unknown): Readonly<Required<RelayOptions>> {
  return parseOptions('relay()', options, RELAY_SPEC, DEFAULT_RELAY_OPTIONS);
}
