/**
 * The balancer names, shared by the config (which accepts them) and upstream/balancer (which
 * builds them); the balancers themselves live in upstream/balancer.
 */
export const BALANCER_KINDS = [
  'peak-ewma',
  'round-robin',
  'weighted-round-robin',
  'least-request',
  'consistent-hash',
] as const;

export type BalancerKind = (typeof BALANCER_KINDS)[number];
