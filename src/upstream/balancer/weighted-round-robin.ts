import type { Balancer, Pickable } from './balancer.js';

/**
 * nginx's smooth weighted round robin: exact proportions over a cycle of sum(weights) picks,
 * with a heavy member's turns spread out (5:1:1 gives a a b a c a a, never a a a a a b c),
 * so a heavy endpoint never receives a burst.
 *
 * Each pick adds every candidate's weight to its `current` and takes the largest; the winner
 * pays back the candidates' total weight. Only the candidates take part, so a member missing
 * from this pick (unhealthy, excluded by a retry) neither gains nor loses credit. A weight of 0
 * (or less) is never picked while a candidate with a positive weight exists.
 */
export class WeightedRoundRobinBalancer<E extends Pickable = Pickable> implements Balancer<E> {
  readonly kind = 'weighted-round-robin' as const;
  private current = new Map<E, number>();
  /** Used only when every candidate has weight 0. */
  private fallbackCounter = 0;

  setMembers(members: readonly E[]): void {
    // Fresh credits, as nginx does on reconfiguration: stale ones would skew the next cycle.
    const current = new Map<E, number>();
    for (const member of members) current.set(member, 0);
    this.current = current;
  }

  pick(candidates: readonly E[], _hashKey: string | undefined): E {
    if (candidates.length === 1) return candidates[0]!;
    const current = this.current;
    let total = 0;
    let best: E | undefined;
    let bestCurrent = -Infinity;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      const weight = positive(candidate.weight);
      if (weight === 0) continue;
      const credit = (current.get(candidate) ?? 0) + weight;
      current.set(candidate, credit);
      total += weight;
      if (credit > bestCurrent) {
        bestCurrent = credit;
        best = candidate;
      }
    }
    if (best === undefined) {
      const chosen = candidates[this.fallbackCounter % candidates.length]!;
      this.fallbackCounter = (this.fallbackCounter + 1) >>> 0;
      return chosen;
    }
    current.set(best, bestCurrent - total);
    return best;
  }
}

function positive(weight: number): number {
  return weight > 0 ? weight : 0;
}
