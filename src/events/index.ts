/**
 * `tandem-ha/events`: reliable messaging between services. A `Bus` port with adapters for
 * NATS JetStream, RabbitMQ, Apache Kafka and memory; an inbox for idempotent consumers (memory, Redis,
 * PostgreSQL); a transactional outbox for PostgreSQL. Broker and store clients are optional
 * peer dependencies, loaded only when their adapter is used.
 */
export type { Bus, Handler, SubscribeOptions, Subscription, DeadLetter, ReplayOptions } from './bus.js';
export type { Envelope, Message, PublishOptions } from './envelope.js';
export { createEnvelope } from './envelope.js';
export { EVENTS_DEFAULTS } from './defaults.js';
export { Backoff } from './backoff.js';
export type { Inbox } from './inbox.js';
export { MemoryInbox } from './inbox.js';
export { MemoryBus } from './memory.js';
export type { MemoryBusOptions } from './memory.js';
export { registerEventMetrics } from './metrics.js';
export type { EventStats, EventCounts } from './metrics.js';
export { NatsBus } from './nats.js';
export type { NatsBusOptions, NatsConnectionLike } from './nats.js';
export { RedisInbox } from './inbox-redis.js';
export type { RedisInboxOptions, RedisMulti, RedisLike, RedisMultiLike } from './inbox-redis.js';
export { PostgresInbox } from './inbox-postgres.js';
export type { PostgresInboxOptions, PgTransaction, PgPoolLike, PgClientLike, PgResultLike } from './inbox-postgres.js';
export { RabbitMqBus } from './rabbitmq.js';
export type { RabbitMqBusOptions, AmqpConnectionLike } from './rabbitmq.js';
export { KafkaBus } from './kafka.js';
export type { KafkaBusOptions } from './kafka.js';
export { PostgresOutbox, OutboxRelay } from './outbox.js';
export type { PostgresOutboxOptions, RelayOptions, Queryable } from './outbox.js';
