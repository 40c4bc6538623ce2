import { TandemError } from '../../core/errors.js';
import type { Balancer, BalancerKind, Pickable, RandomInt } from './balancer.js';
import { ConsistentHashBalancer } from './consistent-hash.js';
import { LeastRequestBalancer } from './least-request.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { RoundRobinBalancer } from './round-robin.js';
import { WeightedRoundRobinBalancer } from './weighted-round-robin.js';

export interface BalancerOptions {
  /** Random integer source for the power-of-two-choices balancers. Default: Math.random. */
  random?: RandomInt;
  /** Ring points per unit of weight for consistent-hash. Default: DEFAULT_VNODES (160). */
  vnodes?: number;
  /** Clock the endpoints stamp latency samples with, for peak-ewma. Default: performance.now. */
  now?: () => number;
}

/** Builds the balancer a service's `balancer` setting names. */
export function createBalancer<E extends Pickable = Pickable>(kind: BalancerKind, options: BalancerOptions = {}): Balancer<E> {
  switch (kind) {
    case 'peak-ewma':
      return new PeakEwmaBalancer<E>(options.random, options.now);
    case 'round-robin':
      return new RoundRobinBalancer<E>();
    case 'weighted-round-robin':
      return new WeightedRoundRobinBalancer<E>();
    case 'least-request':
      return new LeastRequestBalancer<E>(options.random);
    case 'consistent-hash':
      return new ConsistentHashBalancer<E>(options.vnodes);
    default: {
      // Config validation rejects unknown kinds; reaching here is a bug, not a user error.
      const unknown: never = kind;
      throw new TandemError('TANDEM_ERR_INTERNAL', `unknown balancer kind: ${String(unknown)}`);
    }
  }
}

export { BALANCER_KINDS, defaultRandomInt } from './balancer.js';
export type { Balancer, BalancerKind, Pickable, RandomInt } from './balancer.js';
export { ConsistentHashBalancer, DEFAULT_VNODES } from './consistent-hash.js';
export { LeastRequestBalancer } from './least-request.js';
export { PeakEwmaBalancer } from './peak-ewma.js';
export { RoundRobinBalancer } from './round-robin.js';
export { WeightedRoundRobinBalancer } from './weighted-round-robin.js';
