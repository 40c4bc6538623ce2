import type { Endpoint } from '../endpoint.js';
import type { BalancerKind } from '../../core/balancing.js';

export { BALANCER_KINDS } from '../../core/balancing.js';
export type { BalancerKind } from '../../core/balancing.js';

/** The subset of Endpoint a balancer reads: kept narrow so balancers test without sockets. */
export type Pickable = Pick<
  Endpoint,
  'id' | 'weight' | 'inflight' | 'ewmaMs' | 'ewmaStamp' | 'ewmaSamples' | 'peakMs' | 'peakStamp' | 'warmingSince'
>;

/**
 * A balancer chooses one endpoint among the eligible candidates for a request.
 *
 * - `setMembers` is called with every member whenever membership changes (not per request);
 *   a balancer that keeps derived state (a hash ring, smooth-weight counters) rebuilds it there.
 * - `pick` gets the candidates that may take this request right now (healthy, not excluded by a
 *   retry), never empty, always a subset of the members, and the request's hash key when the
 *   service hashes. It must not allocate on the common path.
 */
export interface Balancer<E extends Pickable = Pickable> {
  readonly kind: BalancerKind;
  setMembers(members: readonly E[]): void;
  pick(candidates: readonly E[], hashKey: string | undefined): E;
}

/** Random integer in [0, n). Overridable in tests through the factory options. */
export type RandomInt = (n: number) => number;

export const defaultRandomInt: RandomInt = (n) => Math.floor(Math.random() * n);
