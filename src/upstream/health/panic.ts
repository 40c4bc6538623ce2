import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
import type { WithHealth } from './state.js';
import { TandemError } from '../../core/errors.js';

/**
 * The panic threshold. When too few members are eligible, the passive detector is the likelier
 * liar (a shared dependency blipped, a burst of errors ejected healthy instances): sending every
 * request to the few left would overload them. So below the threshold the members ejected on
 * suspicion come back into rotation with the eligible ones.
 *
 * Unlike Envoy, members whose own health checks fail (refused, timed out or 5xx: `unhealthy`)
 * stay out even in panic: traffic sent there fails for certain, and with two of three instances
 * killed, spreading over all three would fail two requests in three. Only when no member is
 * eligible or merely ejected — every check failing, which suggests the checks rather than the
 * fleet are broken — is traffic spread over every member that is not leaving.
 */
export interface PanicOptions {
  panicThreshold: number;
}

/** Envoy's healthy_panic_threshold (core/defaults/upstream.ts). */
export const DEFAULT_PANIC: Readonly<PanicOptions> = Object.freeze({ panicThreshold: UPSTREAM_DEFAULTS.panicThreshold });

const NONE: readonly never[] = Object.freeze([]);

/**
 * Picks the candidates a balancer may choose from. Draining members are never candidates, nor
 * counted: a rolling deploy that drains half the fleet is not a reason to panic.
 *
 * `select` returns the same array as the previous call when the candidates did not change, and
 * the members array itself when every member qualifies, so recomputing on every transition
 * allocates only when the answer really changed.
 */
export class PanicThreshold<T extends WithHealth = WithHealth> {
  readonly options: Readonly<PanicOptions>;
  private last: readonly T[] = NONE;
  private panicking = false;

  constructor(options: Partial<PanicOptions> = {}) {
    const panicThreshold = options.panicThreshold ?? DEFAULT_PANIC.panicThreshold;
    if (!(panicThreshold >= 0 && panicThreshold <= 1)) {
      throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `panicThreshold must be in [0, 1], got ${panicThreshold}`);
    }
    this.options = Object.freeze({ panicThreshold });
  }

  /** True when the last `select` found the service in panic (for a gauge). */
  get inPanic(): boolean {
    return this.panicking;
  }

  select(members: readonly T[]): readonly T[] {
    let present = 0;
    let eligible = 0;
    let ejected = 0;
    for (const member of members) {
      const health = member.health;
      const kind = health.state.kind;
      if (kind === 'draining') continue;
      present++;
      if (health.eligible) eligible++;
      else if (kind === 'ejected') ejected++;
    }
    this.panicking = eligible < this.options.panicThreshold * present;
    if (!this.panicking) return this.remember(members, eligible, isEligible);
    if (eligible + ejected > 0) return this.remember(members, eligible + ejected, isEligibleOrEjected);
    return this.remember(members, present, isPresent);
  }

  private remember(members: readonly T[], count: number, take: (member: T) => boolean): readonly T[] {
    if (count === 0) return (this.last = NONE);
    if (count === members.length) return (this.last = members);
    if (this.last.length === count && sameSelection(members, this.last, take)) return this.last;
    const chosen: T[] = [];
    for (const member of members) if (take(member)) chosen.push(member);
    return (this.last = chosen);
  }
}

function isEligible(member: WithHealth): boolean {
  return member.health.eligible;
}

function isEligibleOrEjected(member: WithHealth): boolean {
  return member.health.eligible || member.health.state.kind === 'ejected';
}

function isPresent(member: WithHealth): boolean {
  return member.health.state.kind !== 'draining';
}

/** Whether the members that `take` accepts are, in order, exactly `previous` (same length known). */
function sameSelection<T>(members: readonly T[], previous: readonly T[], take: (member: T) => boolean): boolean {
  let i = 0;
  for (const member of members) {
    if (!take(member)) continue;
    if (previous[i] !== member) return false;
    i++;
  }
  return true;
}
