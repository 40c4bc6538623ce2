import type { Envelope, Message, PublishOptions } from './envelope.js';
import type { Inbox } from './inbox.js';
import type { EventStats } from './metrics.js';

/** A handler's outcome decides the message's fate: resolve = ack, throw = retry, then dead letter. */
export type Handler<T = unknown, Tx = undefined> = (message: Message<T>, tx: Tx) => Promise<void> | void;

export interface SubscribeOptions<Tx = undefined> {
  /** Handlers running at once in this subscription. Default 16. */
  concurrency?: number;
  /** Tries (first delivery included) before the message goes to the dead-letter topic. Default 5. */
  maxAttempts?: number;
  /** Retry delays: `initial` ms doubling per attempt up to `max` ms, half jittered. Default 200 ms → 30 s. */
  backoff?: { initial?: number; max?: number };
  /** Deduplicates by (group, message id) so that a redelivered or republished message has its effect once. */
  inbox?: Inbox<Tx>;
}

export interface Subscription {
  readonly topic: string;
  readonly group: string;
  /** Stops taking messages, waits for running handlers (up to drainTimeout), then detaches. */
  close(): Promise<void>;
}

/** A message that exhausted its attempts (or could not be decoded), with why. */
export interface DeadLetter<T = unknown> {
  readonly envelope: Envelope<T>;
  readonly group: string;
  readonly error: { readonly message: string; readonly name?: string; readonly code?: string };
  /** Attempts made before it was dead-lettered. */
  readonly attempts: number;
  readonly failedAt: string;
}

export interface ReplayOptions {
  /** Only these message ids; default every dead letter of the group. */
  ids?: readonly string[];
}

/**
 * The events port. Every adapter (memory, NATS JetStream, RabbitMQ, Kafka) keeps the same promises;
 * test/events/contract.ts checks them against each.
 */
export interface Bus {
  readonly kind: 'memory' | 'nats' | 'rabbitmq' | 'kafka';
  /** Resolves with the envelope once the broker has confirmed the message (persisted). */
  publish<T>(topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>>;
  /** Publishes a ready-made envelope (the outbox relay's path): id, time and trace are kept. */
  publishEnvelope(envelope: Envelope): Promise<void>;
  /**
   * Competing consumers within a group (one message goes to one subscriber of the group);
   * every group gets every message published after the group first subscribed.
   */
  subscribe<T = unknown, Tx = undefined>(topic: string, group: string, handler: Handler<T, Tx>, options?: SubscribeOptions<Tx>): Promise<Subscription>;
  /** Dead letters of a group, oldest first (at most `limit`, default 100). */
  deadLetters(topic: string, group: string, options?: { limit?: number }): Promise<DeadLetter[]>;
  /** Sends dead letters back to their group (attempts start again) and removes them; returns how many. */
  replayDeadLetters(topic: string, group: string, options?: ReplayOptions): Promise<number>;
  /** Counters and, per subscription, the broker-reported lag. */
  stats(): Promise<EventStats>;
  /** Graceful: stops every subscription, waits for running handlers, then closes the connection. */
  close(): Promise<void>;
}
