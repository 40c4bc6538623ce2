/**
 * Every events default in one place (durations in milliseconds). docs/events.md lists them;
 * test/events/defaults.test.ts keeps the two in step.
 */
export const EVENTS_DEFAULTS = Object.freeze({
  /** Handlers of one subscription running at once (also the broker prefetch). */
  concurrency: 16,
  /** Tries before a message is dead-lettered (MassTransit: 5 immediate + 3 delayed). */
  maxAttempts: 5,
  /** First retry delay; doubles per attempt up to backoffMax, half of it jittered. */
  backoffInitial: 200,
  backoffMax: 30_000,
  /** Longest a publish waits for the broker's confirm, reconnects included. */
  publishTimeout: 10_000,
  /** Reconnect delays after a lost connection: doubling from the first to the cap, jittered. */
  reconnectInitial: 100,
  reconnectMax: 5_000,
  /** close() waits this long for in-flight handlers before closing the connection anyway. */
  drainTimeout: 30_000,
  /** Inbox entries are kept this long; a duplicate arriving later has its effect again. MassTransit keeps ≈ 7 days. */
  inboxRetention: 7 * 24 * 3600_000,
  /** A Redis inbox claim expires after this long if its holder dies mid-handler. */
  inboxLease: 30_000,
  /** NATS: stream max age, publish dedupe window, time a consumer has to ack before redelivery. */
  natsMaxAge: 7 * 24 * 3600_000,
  natsDuplicateWindow: 120_000,
  natsAckWait: 30_000,
  /** RabbitMQ: quorum-queue x-delivery-limit, the safety net for a message that crashes its consumer. */
  rabbitDeliveryLimit: 20,
  /** Kafka: partitions of the topics the bus creates (the most consumers of a group that get work). */
  kafkaPartitions: 6,
  /** Kafka: a consumer not heard from this long leaves its group; its partitions go to the others. */
  kafkaSessionTimeout: 10_000,
  /** Outbox relay: poll interval when idle, rows per batch, sent rows kept for. */
  outboxPollInterval: 100,
  outboxBatchSize: 200,
  outboxRetention: 24 * 3600_000,
});
