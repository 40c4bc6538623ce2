import { TandemError } from '../../core/errors.js';
import type { Balancer, Pickable } from './balancer.js';
import { hash32 } from './hash.js';
import { RoundRobinBalancer } from './round-robin.js';

/** Points per unit of weight. Ketama's 160 keeps each member's share within a few percent. */
export const DEFAULT_VNODES = 160;

/**
 * A Ketama-style hash ring: each member owns `vnodes × weight` points hashed from
 * `${id}#${i}`, and a key goes to the owner of the first point at or after its hash. Adding or
 * removing one of n members only moves the keys on the arcs it gains or loses, about 1/n.
 *
 * When the key's owner is not a candidate (unhealthy, excluded by a retry) the walk goes on
 * clockwise to the next candidate's point: the same member that would own the key if the
 * excluded one were removed, so a failover is as stable as a membership change. Requests
 * without a key are spread round robin.
 *
 * The ring reads weights in setMembers; a weight change takes effect at the next call.
 */
export class ConsistentHashBalancer<E extends Pickable = Pickable> implements Balancer<E> {
  readonly kind = 'consistent-hash' as const;
  private readonly vnodes: number;
  private members: readonly E[] = [];
  private indexOf = new Map<E, number>();
  /** Ring positions, ascending. */
  private points = new Uint32Array(0);
  /** owners[i] is the index in `members` of the member owning points[i]. */
  private owners = new Int32Array(0);
  /** marks[m] === epoch when member m is a candidate of the current pick. */
  private marks = new Uint32Array(0);
  private epoch = 0;
  private readonly keyless = new RoundRobinBalancer<E>();

  constructor(vnodes: number = DEFAULT_VNODES) {
    if (!Number.isInteger(vnodes) || vnodes < 1) {
      throw new TandemError('TANDEM_ERR_INTERNAL', `vnodes must be a positive integer, got ${vnodes}`);
    }
    this.vnodes = vnodes;
  }

  setMembers(members: readonly E[]): void {
    const snapshot = members.slice();
    const indexOf = new Map<E, number>();
    const hashes: number[] = [];
    const owners: number[] = [];
    snapshot.forEach((member, m) => {
      indexOf.set(member, m);
      const count = Math.round(this.vnodes * Math.max(0, member.weight));
      for (let i = 0; i < count; i++) {
        hashes.push(hash32(`${member.id}#${i}`));
        owners.push(m);
      }
    });
    const order = hashes.map((_, i) => i);
    // Break the rare point collision by id, so the ring does not depend on member order.
    order.sort((a, b) => hashes[a]! - hashes[b]! || compareIds(snapshot[owners[a]!]!.id, snapshot[owners[b]!]!.id));
    this.members = snapshot;
    this.indexOf = indexOf;
    this.points = Uint32Array.from(order, (i) => hashes[i]!);
    this.owners = Int32Array.from(order, (i) => owners[i]!);
    this.marks = new Uint32Array(snapshot.length);
    this.epoch = 0;
  }

  pick(candidates: readonly E[], hashKey: string | undefined): E {
    if (hashKey === undefined) return this.keyless.pick(candidates, undefined);
    if (candidates.length === 1) return candidates[0]!;
    const hash = hash32(hashKey);
    const points = this.points;
    const owners = this.owners;
    const size = points.length;
    const start = firstAtOrAfter(points, hash);
    // Candidates are a subset of the members, so as many candidates as members means all of
    // them: the owner of the key's point is the answer without any check.
    if (candidates.length === this.members.length && size > 0) {
      return this.members[owners[start === size ? 0 : start]!]!;
    }
    const epoch = this.markCandidates(candidates);
    const marks = this.marks;
    for (let step = 0, at = start; step < size; step++, at++) {
      if (at === size) at = 0;
      const owner = owners[at]!;
      if (marks[owner] === epoch) return this.members[owner]!;
    }
    // No candidate owns a point (weight 0, or not a member): stay stable for the key anyway.
    return candidates[hash % candidates.length]!;
  }

  /** Stamps the candidates' member slots with a fresh epoch: no Set per pick. */
  private markCandidates(candidates: readonly E[]): number {
    let epoch = (this.epoch + 1) >>> 0;
    if (epoch === 0) {
      this.marks.fill(0);
      epoch = 1;
    }
    this.epoch = epoch;
    for (let i = 0; i < candidates.length; i++) {
      const m = this.indexOf.get(candidates[i]!);
      if (m !== undefined) this.marks[m] = epoch;
    }
    return epoch;
  }
}

/** Index of the first point >= hash, or points.length when the key wraps to the start. */
function firstAtOrAfter(points: Uint32Array, hash: number): number {
  let low = 0;
  let high = points.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (points[mid]! < hash) low = mid + 1;
    else high = mid;
  }
  return low;
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
