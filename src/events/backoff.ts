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
