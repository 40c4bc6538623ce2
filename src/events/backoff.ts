import { TandemError } from '../core/errors.js';

/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half random. Full jitter
 * (0..d) may retry at once, which defeats the point after a failure; no jitter makes every
 * consumer of a failed batch come back at the same instant.
 */
export class Backoff {
  constructor(
    readonly initial: number,
    readonly max: number,
    private readonly random: () => number = Math.random,
  ) {
    if (!(initial > 0) || !(max >= initial)) {
      throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `backoff: need 0 < initial <= max, got initial ${initial}, max ${max}`);
    }
  }

  /** Delay before try `attempt + 1`, after `attempt` (>= 1) tries failed. */
  delay(attempt: number): number {
    const base = Math.min(this.max, this.initial * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
    return Math.round(base / 2 + this.random() * (base / 2));
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How an adapter waits for the broker to take a message: its settings, as `untilConfirmed` needs them. */
export interface ConfirmLoop {
  /** What is being sent, for the error ("publish orders.placed"). */
  what: string;
  /** The broker's name and what it does to a message it took ("confirmed by NATS"). */
  by: string;
  timeoutMs: number;
  backoff: Backoff;
  closed(): boolean;
  /** An error after which trying again cannot help before the deadline (Kafka's own timeout). */
  final?(err: unknown): boolean;
}

/**
 * Sends until the broker took it or `timeoutMs` passed: `op(leftMs)` tries once with the time
 * left; between tries the backoff, never past the deadline. A closed bus ends it at once
 * (TANDEM_ERR_BUS_CLOSED); the deadline with TANDEM_ERR_PUBLISH_FAILED (retryable), naming the
 * last error as its cause. The same loop for NATS, RabbitMQ and Kafka.
 */
export async function untilConfirmed(loop: ConfirmLoop, op: (leftMs: number) => Promise<void>): Promise<void> {
  const deadline = Date.now() + loop.timeoutMs;
  let lastError: unknown;
  for (let attempt = 1; ; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      await op(left);
      return;
    } catch (err) {
      lastError = err;
      if (loop.closed()) throw new TandemError('TANDEM_ERR_BUS_CLOSED', `${loop.what}: the bus closed`, { cause: err });
      if (loop.final?.(err)) break;
      await sleep(Math.min(loop.backoff.delay(attempt), Math.max(0, deadline - Date.now())));
    }
  }
  throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', `${loop.what}: not ${loop.by} within ${loop.timeoutMs} ms`, { cause: lastError, retryable: true });
}
