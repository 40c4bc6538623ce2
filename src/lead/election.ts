import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { TandemError } from '../core/errors.js';
import * as rules from '../core/options.js';
import type { LeaderState, LeaseStore, Term } from './types.js';

export interface LeadOptions {
  /** Where the lease lives: `postgresLeaseStore()`, `etcdLeaseStore()`, or a `MemoryLeaseStore` in one process. */
  store: LeaseStore;
  /** Lease length (ms). A dead leader's work resumes elsewhere within about ttl + retryInterval. Default 1500. */
  ttl?: number;
  /** This candidate's name in the store; unique among the candidates. Default host-pid-random. */
  id?: string;
  /** How often a candidate tries for a held lease (ms). Default ttl / 6. */
  retryInterval?: number;
  /** Errors of the store and of the work (the candidate carries on). Default: none. */
  onError?: (err: unknown) => void;
  /** Time for renewals and the local deadline; tests pass a FakeClock. */
  clock?: Clock;
}

/** Lease default: a dead leader is replaced within 2 s (ttl + retryInterval = 1.75 s). */
export const DEFAULT_LEAD_TTL_MS = 1500;
/**
 * The leader renews every ttl / 3 and believes itself leader until ttl × 2/3 after it *sent*
 * its last successful renewal: the store set the expiry at least that long after, so the
 * leader stops (its signal aborts) a third of a lease before anyone else can start.
 */
const RENEW_SHARE = 1 / 3;
const LOCAL_SHARE = 2 / 3;

const SPEC: rules.OptionSpec = {
  store: rules.methods('acquire', 'renew', 'release', 'close'),
  ttl: rules.duration(30, 3_600_000),
  id: rules.string,
  retryInterval: rules.duration(1),
  onError: rules.func,
  clock: rules.methods('now', 'setTimeout', 'clearTimeout'),
};

/**
 * Runs `work` on exactly one of the candidates that call `lead` with the same `name` and store:
 * the one holding the lease. `work` gets a Term — its fencing token, an AbortSignal that fires
 * the moment leadership may be lost, and `isLeader()` to check right before each side effect —
 * and should return once the signal fires. When `work` returns (or fails) the lease is given up
 * and the candidate campaigns again. Returns at once; `close()` stops.
 */
export function lead(name: string, options: LeadOptions, work: (term: Term) => Promise<void> | void): Leader {
  if (typeof name !== 'string' || name.length === 0) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `lead(): the name must be a non-empty string, got ${rules.kindOf(name)}`);
  if (typeof work !== 'function') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `lead(): the work must be a function, got ${rules.kindOf(work)}`);
  const parsed = rules.parseOptions<LeadOptions>('lead()', options, SPEC, {}, ['store']);
  return new Leader(name, parsed, work);
}

export class Leader {
  private current: LeaderState = 'candidate';
  /** This term: its token, its abort controller, the local deadline. */
  private term: { token: number; controller: AbortController; deadline: number; timer: TimerHandle | undefined } | undefined;
  private readonly ttl: number;
  private readonly retryMs: number;
  private readonly clock: Clock;
  readonly id: string;
  private readonly loop: Promise<void>;
  private wake: (() => void) | undefined;
  private readonly electedListeners = new Set<(term: Term) => void>();
  private readonly demotedListeners = new Set<(why: string) => void>();
  /** Terms won by this candidate. */
  terms = 0;

  constructor(
    readonly name: string,
    private readonly options: Readonly<LeadOptions>,
    private readonly work: (term: Term) => Promise<void> | void,
  ) {
    this.ttl = options.ttl ?? DEFAULT_LEAD_TTL_MS;
    this.retryMs = options.retryInterval ?? Math.max(1, Math.round(this.ttl / 6));
    this.clock = options.clock ?? realClock;
    this.id = options.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.loop = this.campaign();
  }

  get state(): LeaderState {
    return this.current;
  }

  /** The current term's token while leader; undefined otherwise. */
  get token(): number | undefined {
    return this.term?.token;
  }

  onElected(listener: (term: Term) => void): { dispose(): void } {
    this.electedListeners.add(listener);
    return { dispose: () => this.electedListeners.delete(listener) };
  }

  /** `why`: 'renewal refused', 'renewal failed', 'local deadline', 'work ended', 'closed'. */
  onDemoted(listener: (why: string) => void): { dispose(): void } {
    this.demotedListeners.add(listener);
    return { dispose: () => this.demotedListeners.delete(listener) };
  }

  /** Stops campaigning; a leader's signal aborts, its work is awaited, and the lease given up. */
  async close(): Promise<void> {
    if (this.current === 'closed') return;
    const term = this.term;
    this.demote('closed');
    this.current = 'closed';
    this.wake?.();
    await this.loop;
    if (term !== undefined) await this.bounded(this.options.store.release(this.name, this.id, term.token));
  }

  private async campaign(): Promise<void> {
    while (!this.closed) {
      const sent = this.clock.now();
      const token = await this.bounded(this.options.store.acquire(this.name, this.id, this.ttl));
      if (this.closed) return;
      if (token === undefined) {
        await this.sleep(this.retryMs);
        continue;
      }
      const term = this.elect(token, sent);
      const working = this.runWork(term);
      await this.keep(token);
      await working;
      // The work is over (or leadership lost): the lease goes, for another candidate (or this one) to take.
      if (!this.closed) {
        await this.bounded(this.options.store.release(this.name, this.id, token));
        await this.sleep(this.retryMs);
      }
    }
  }

  private elect(token: number, sent: number): Term {
    const controller = new AbortController();
    this.term = { token, controller, deadline: 0, timer: undefined };
    this.extend(sent);
    this.current = 'leader';
    this.terms++;
    const term: Term = {
      name: this.name,
      token,
      signal: controller.signal,
      isLeader: () => this.certain(token),
    };
    for (const l of this.electedListeners) l(term);
    return term;
  }

  /** Term `token` is still on and before its local deadline. */
  private certain(token: number): boolean {
    const term = this.term;
    return term !== undefined && term.token === token && !term.controller.signal.aborted && this.clock.now() < term.deadline;
  }

  /** A renewal sent at `sent` succeeded: leadership is certain until sent + ttl × 2/3. */
  private extend(sent: number): void {
    const term = this.term!;
    term.deadline = sent + this.ttl * LOCAL_SHARE;
    if (term.timer !== undefined) this.clock.clearTimeout(term.timer);
    term.timer = this.clock.setTimeout(() => this.demote('local deadline'), Math.max(0, term.deadline - this.clock.now()), true);
  }

  private async runWork(term: Term): Promise<void> {
    try {
      await this.work(term);
    } catch (err) {
      this.options.onError?.(err);
    }
    if (this.term?.token === term.token) this.demote('work ended');
  }

  /** Renews every ttl / 3 while this term lasts. */
  private async keep(token: number): Promise<void> {
    while (this.term?.token === token) {
      await this.sleep(this.ttl * RENEW_SHARE);
      if (this.term?.token !== token) return;
      const sent = this.clock.now();
      const ok = await this.bounded(this.options.store.renew(this.name, this.id, token, this.ttl));
      if (this.term?.token !== token) return;
      if (ok === true) this.extend(sent);
      else this.demote(ok === false ? 'renewal refused' : 'renewal failed');
    }
  }

  private demote(why: string): void {
    const term = this.term;
    if (term === undefined) return;
    this.term = undefined;
    if (term.timer !== undefined) this.clock.clearTimeout(term.timer);
    if (this.current === 'leader') this.current = 'candidate';
    term.controller.abort(new TandemError('TANDEM_ERR_NOT_LEADER', `${this.id} is no longer the leader of ${this.name} (term ${term.token}): ${why}`));
    for (const l of this.demotedListeners) l(why);
    this.wake?.();
  }

  /** A store call that takes longer than a lease counts as failed (undefined): a cut connection may never answer. */
  private async bounded<T>(call: Promise<T>): Promise<T | undefined> {
    let timer: TimerHandle | undefined;
    const timeout = new Promise<undefined>((resolve) => { timer = this.clock.setTimeout(() => resolve(undefined), this.ttl, true); });
    try {
      return await Promise.race([call, timeout]);
    } catch (err) {
      this.options.onError?.(err);
      return undefined;
    } finally {
      this.clock.clearTimeout(timer!);
    }
  }

  private get closed(): boolean {
    return this.current === 'closed';
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // Kept alive: campaigning is what a standby process is there for.
      const timer = this.clock.setTimeout(() => { this.wake = undefined; resolve(); }, ms, true);
      this.wake = () => { this.clock.clearTimeout(timer); this.wake = undefined; resolve(); };
    });
  }
}
