import { Backoff } from './backoff.js';
import type { DeadLetter, Handler, SubscribeOptions } from './bus.js';
import { EVENTS_DEFAULTS } from './defaults.js';
import { parseSubscribeOptions } from './options.js';
import { decodeEnvelope, type Envelope, type Message } from './envelope.js';
import type { Inbox } from './inbox.js';
import type { SubscriptionCounter } from './metrics.js';

/** One delivery as an adapter hands it over: the raw body and how to settle it on its broker. */
export interface Delivery {
  readonly body: Uint8Array;
  /** 1-based try number, as far as the broker (and our retry headers) know. */
  readonly attempt: number;
  readonly redelivered: boolean;
  ack(): Promise<void> | void;
  /** Deliver again to the group after `delayMs` (the attempt count goes up). */
  retry(delayMs: number): Promise<void> | void;
  /** Store the message in the group's dead letters, then ack it. */
  deadLetter(error: DeadLetter['error'], attempts: number): Promise<void>;
  /** Tells the broker the handler is still busy (NATS: extends the ack deadline). */
  working?(): void;
  /**
   * Called before anything else, holding a handler slot: records the start durably (Kafka: its
   * delivery count) and settles `attempt` and `redelivered`. False: the message is no longer
   * this consumer's to handle (its partition went to another) and is left alone.
   */
  begin?(): boolean | Promise<boolean>;
}

export interface ResolvedSubscribeOptions<Tx> {
  concurrency: number;
  maxAttempts: number;
  backoff: Backoff;
  inbox: Inbox<Tx> | undefined;
}

export function resolveSubscribeOptions<Tx>(subscribeOptions?: SubscribeOptions<Tx>): ResolvedSubscribeOptions<Tx> {
  const options = parseSubscribeOptions<Tx>(subscribeOptions);
  const { concurrency, maxAttempts } = options;
  const initial = options.backoff?.initial ?? EVENTS_DEFAULTS.backoffInitial;
  const max = options.backoff?.max ?? Math.max(EVENTS_DEFAULTS.backoffMax, initial);
  return { concurrency, maxAttempts, backoff: new Backoff(initial, max), inbox: options.inbox };
}

export function errorInfo(err: unknown): DeadLetter['error'] {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { message: err.message, name: err.name, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { message: String(err) };
}

/**
 * The consumer side every adapter shares: decode, give up past maxAttempts, run the handler
 * (through the inbox when there is one), then ack, retry with backoff, or dead-letter. It also
 * bounds concurrency and lets close() wait for running handlers.
 */
export class HandlerRunner<T, Tx> {
  inFlight = 0;
  private closing = false;
  private readonly waiters: Array<() => void> = [];
  private readonly idleWaiters: Array<() => void> = [];
  private readonly busy = new Set<Delivery>();
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    readonly topic: string,
    readonly group: string,
    private readonly handler: Handler<T, Tx>,
    readonly options: ResolvedSubscribeOptions<Tx>,
    private readonly counts: Record<SubscriptionCounter, number>,
    /** Broker operations that fail (a lost connection): the broker redelivers, so they are only reported. */
    private readonly onError: (err: unknown) => void,
    /** When to call working() while a handler runs; 0 = never. */
    private readonly workingEvery = 0,
  ) {}

  get hasSlot(): boolean {
    return !this.closing && this.inFlight < this.options.concurrency;
  }

  /** Resolves when another handler may start (false once closing). */
  slot(): boolean | Promise<boolean> {
    if (this.hasSlot) return true;
    return this.waitForSlot();
  }

  private async waitForSlot(): Promise<boolean> {
    while (!this.closing && this.inFlight >= this.options.concurrency) await new Promise<void>((r) => this.waiters.push(r));
    return !this.closing;
  }

  /** Runs one delivery to its end. Never throws. */
  async run(d: Delivery): Promise<void> {
    this.inFlight++;
    const c = this.counts;
    try {
      if (d.begin) {
        const ours = d.begin();
        if (ours !== true && !(ours !== false && (await ours))) return;
      }
      c.delivered++;
      if (d.redelivered) c.redelivered++;
      if (d.working) this.keepAlive(d);
      await this.settle(d);
    } catch (err) {
      this.onError(err);
    } finally {
      this.busy.delete(d);
      this.inFlight--;
      this.waiters.shift()?.();
      if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * One timer per subscription, not per message: every `workingEvery` ms it tells the broker
   * that each delivery still running is being worked on (NATS extends its ack deadline).
   */
  private keepAlive(d: Delivery): void {
    if (this.workingEvery <= 0) return;
    this.busy.add(d);
    if (this.ticker) return;
    this.ticker = setInterval(() => {
      if (this.busy.size === 0) {
        clearInterval(this.ticker);
        this.ticker = undefined;
        return;
      }
      for (const b of this.busy) b.working?.();
    }, this.workingEvery);
    this.ticker.unref();
  }

  private async settle(d: Delivery): Promise<void> {
    const c = this.counts;
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(d.body);
    } catch (err) {
      await d.deadLetter(errorInfo(err), d.attempt);
      c.deadLettered++;
      return;
    }
    const { maxAttempts, inbox } = this.options;
    if (d.attempt > maxAttempts) {
      // Only reachable when tries ended without an outcome: the consumer died or missed its ack deadline.
      await d.deadLetter({ message: `delivery limit: ${d.attempt - 1} deliveries ended without an outcome (the consumer died or did not ack in time)`, name: 'DeliveryLimit' }, d.attempt - 1);
      c.deadLettered++;
      return;
    }
    const message = { ...envelope, attempt: d.attempt, redelivered: d.redelivered } as Message<T>;
    try {
      if (inbox) await inbox.once(this.group, envelope.id, (tx) => this.handler(message, tx));
      else await this.handler(message, undefined as Tx);
    } catch (err) {
      if (d.attempt >= maxAttempts) {
        await d.deadLetter(errorInfo(err), d.attempt);
        c.deadLettered++;
      } else {
        await d.retry(this.options.backoff.delay(d.attempt));
        c.retried++;
      }
      return;
    }
    await d.ack();
    c.acked++;
  }

  /** Stops new work and resolves when running handlers have finished, or after `timeout` ms. */
  async drain(timeout: number): Promise<void> {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w();
    if (this.inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => this.idleWaiters.push(r)),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeout); // ref'd: a closing bus keeps the process alive while handlers finish
      }),
    ]);
    clearTimeout(timer);
  }

  get isClosing(): boolean {
    return this.closing;
  }
}
