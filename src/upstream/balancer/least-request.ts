import { defaultRandomInt, type Balancer, type Pickable, type RandomInt } from './balancer.js';

/**
 * Power of two choices on requests in flight: sample two distinct candidates at random and
 * take the less loaded. Comparing two instead of scanning all avoids the herd a global
 * minimum causes (every gateway sending to the same idle endpoint at once), yet still keeps
 * load near the best (Mitzenmacher). Load is (inflight + 1) / weight, so a weight-2 endpoint
 * carries twice the requests of a weight-1 one at equal cost; the +1 counts the request
 * being placed, which lets weight matter even when both are idle.
 */
export class LeastRequestBalancer<E extends Pickable = Pickable> implements Balancer<E> {
  readonly kind = 'least-request' as const;
  private readonly random: RandomInt;

  constructor(random: RandomInt = defaultRandomInt) {
    this.random = random;
  }

  setMembers(_members: readonly E[]): void {
    // Stateless: load is read from the endpoints at pick time.
  }

  pick(candidates: readonly E[], _hashKey: string | undefined): E {
    const n = candidates.length;
    if (n === 1) return candidates[0]!;
    const i = this.random(n);
    let j = this.random(n - 1);
    // Draw j from the n - 1 others: shifting past i keeps the pair distinct and uniform.
    if (j >= i) j++;
    const first = candidates[i]!;
    const second = candidates[j]!;
    // A tie goes to the first; it was drawn at random, so ties still spread evenly.
    return load(second) < load(first) ? second : first;
  }
}

function load(endpoint: Pickable): number {
  return endpoint.weight > 0 ? (endpoint.inflight + 1) / endpoint.weight : Infinity;
}
