import { realClock, type Clock } from '../core/clock.js';
import type { LeaseStore } from './types.js';

/**
 * The in-memory twin of a lease store: candidates in one process share it. For tests and for
 * single-process setups; it is what the contract of a LeaseStore means, without a network.
 */
export class MemoryLeaseStore implements LeaseStore {
  private readonly leases = new Map<string, { holder: string | undefined; token: number; expires: number }>();

  constructor(private readonly clock: Clock = realClock) {}

  async acquire(name: string, holder: string, ttlMs: number): Promise<number | undefined> {
    const now = this.clock.now();
    const lease = this.leases.get(name);
    if (lease !== undefined && lease.holder !== undefined && lease.holder !== holder && lease.expires > now) return undefined;
    const token = (lease?.token ?? 0) + 1;
    this.leases.set(name, { holder, token, expires: now + ttlMs });
    return token;
  }

  async renew(name: string, holder: string, token: number, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    const lease = this.leases.get(name);
    if (lease === undefined || lease.holder !== holder || lease.token !== token || lease.expires <= now) return false;
    lease.expires = now + ttlMs;
    return true;
  }

  async release(name: string, holder: string, token: number): Promise<void> {
    const lease = this.leases.get(name);
    if (lease !== undefined && lease.holder === holder && lease.token === token) lease.holder = undefined;
  }

  /** The token of the latest term of `name` (0 before any): what a fenced write compares with. */
  latestToken(name: string): number {
    return this.leases.get(name)?.token ?? 0;
  }

  async close(): Promise<void> {}
}
