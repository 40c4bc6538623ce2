/**
 * The lease a leader holds, kept by a store every candidate shares (PostgreSQL, etcd, or the
 * in-memory twin for one process). The store's own clock decides expiry, so the candidates'
 * clocks never have to agree.
 */
export interface LeaseStore {
  /**
   * Takes the lease on `name` for `holder` for `ttlMs` when it is free, expired, or already
   * `holder`'s: resolves to its fencing token, greater than every token given out for `name`
   * before; undefined while another candidate holds it.
   */
  acquire(name: string, holder: string, ttlMs: number): Promise<number | undefined>;
  /** Extends `holder`'s lease by `ttlMs` from now; false when it has expired or is no longer theirs. */
  renew(name: string, holder: string, token: number, ttlMs: number): Promise<boolean>;
  /** Gives the lease up so another candidate may take it at once; nothing when it is no longer theirs. */
  release(name: string, holder: string, token: number): Promise<void>;
  /** Closes what the store opened (not a pool it was given). */
  close(): Promise<void>;
}

/** One term of leadership, handed to the work the leader runs. */
export interface Term {
  readonly name: string;
  /** Grows with every new term of `name`, whoever holds it: write it with every side effect. */
  readonly token: number;
  /** Aborts the moment leadership may be lost: a failed renewal, the local deadline, close(). */
  readonly signal: AbortSignal;
  /**
   * True while leadership is certain: not aborted and before the local deadline, a monotonic
   * time shorter than the lease. Check it right before each side effect — a process that was
   * frozen and resumes learns here, before its timers have run, that it may no longer lead.
   */
  isLeader(): boolean;
}

/** What a Leader reports. */
export type LeaderState = 'candidate' | 'leader' | 'closed';
