import { defaultRandomInt, type Balancer, type Pickable, type RandomInt } from './balancer.js';
import { powerOfTwoChoices } from './p2c.js';

/**
 * Power of two choices on requests in flight (see p2c.ts). Load is (inflight + 1) / weight, so a weight-2 endpoint
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
    return powerOfTwoChoices(candidates, this.random, load, 0);
  }
}

function load(endpoint: Pickable, _now: number): number {
  return endpoint.weight > 0 ? (endpoint.inflight + 1) / endpoint.weight : Infinity;
}
