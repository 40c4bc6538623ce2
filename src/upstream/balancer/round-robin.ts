import type { Balancer, Pickable } from './balancer.js';

/** Takes the candidates in turn. Ignores weights and load: for equal, uniformly fast endpoints. */
export class RoundRobinBalancer<E extends Pickable = Pickable> implements Balancer<E> {
  readonly kind = 'round-robin' as const;
  private counter = 0;

  setMembers(_members: readonly E[]): void {
    // Nothing derived from membership: the counter indexes whatever candidates arrive.
  }

  pick(candidates: readonly E[], _hashKey: string | undefined): E {
    const chosen = candidates[this.counter % candidates.length]!;
    // Wrap at 2^32 so the counter stays a small integer; the one skipped turn is harmless.
    this.counter = (this.counter + 1) >>> 0;
    return chosen;
  }
}
