import type { Pickable, RandomInt } from './balancer.js';

/**
 * Power of two choices: sample two distinct candidates at random and take the cheaper.
 * Comparing two instead of scanning all avoids the herd a global minimum causes (every gateway
 * sending to the same idle endpoint at once), yet keeps load near the best (Mitzenmacher).
 * `cost` is a module-level function, so a pick allocates nothing.
 */
export function powerOfTwoChoices<E extends Pickable>(
  candidates: readonly E[],
  random: RandomInt,
  cost: (endpoint: Pickable, now: number) => number,
  now: number,
): E {
  const n = candidates.length;
  if (n === 1) return candidates[0]!;
  const i = random(n);
  let j = random(n - 1);
  // Draw j from the n - 1 others: shifting past i keeps the pair distinct and uniform.
  if (j >= i) j++;
  const first = candidates[i]!;
  const second = candidates[j]!;
  // A tie goes to the first; it was drawn at random, so ties still spread evenly.
  return cost(second, now) < cost(first, now) ? second : first;
}
