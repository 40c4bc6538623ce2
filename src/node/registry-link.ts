import { randomBytes } from 'node:crypto';
import { isTandemError } from '../core/errors.js';
import { registryFromUrl } from '../discovery/from-url.js';
import type { InstanceState, KeepAlive, Lease, Registration, Registry } from '../discovery/types.js';
import { TandemError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';

export interface LinkLogger {
  info(fields: Record<string, unknown>): void;
  warn(fields: Record<string, unknown>): void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

export interface RegistryLinkOptions {
  url: string;
  token: string | undefined;
  /** What to register (called for every registration: the state comes from the link). */
  registration: () => Registration;
  heartbeatInterval: number;
  /** A gateway that leaves the keep-alive stream or a beat unanswered this long is taken for frozen or gone (ms). */
  answerTimeout: number;
  log: LinkLogger;
  /** Times the beats and the answer check; tests pass a FakeClock. */
  clock?: Clock;
}

/**
 * One instance's membership in one registry: registers, keeps the lease alive over a
 * long-lived stream, and registers again whenever the lease is lost (the registry restarted,
 * or the lease expired while this process was stalled), with backoff while it is unreachable.
 * A registry that stops answering (frozen, or its host gone without closing the connection) is
 * left after `answerTimeout` and reconnected to like one that closed; every link has its own
 * loop, stream and timers, so a stuck gateway never delays the beats to the others.
 */
export class RegistryLink {
  readonly url: string;
  readonly registry: Registry;
  /** Registration.retryKey of every attempt of this link. */
  private readonly retryKey: string;
  private lease: Lease | undefined;
  private keepAlive: KeepAlive | undefined;
  private stopped = false;
  private state: InstanceState = 'ready';
  /** The state this registry acknowledged for the current lease (undefined: not known). */
  private acked: InstanceState | undefined;
  private readonly firstAttempt: Promise<void>;
  private settleFirst!: () => void;
  private running: Promise<void> | undefined;
  /** Wakes the loop from a running stream to send the state again (a state change that was not acknowledged). */
  private resync: (() => void) | undefined;
  private readonly registration: () => Registration;
  private readonly heartbeatInterval: number;
  private readonly answerTimeout: number;
  private readonly log: LinkLogger;

  constructor(options: RegistryLinkOptions) {
    this.url = options.url;
    this.registration = options.registration;
    this.heartbeatInterval = options.heartbeatInterval;
    this.answerTimeout = options.answerTimeout;
    this.log = options.log;
    this.registry = registryFromUrl(options.url, options.token, { timeout: 3000, clock: options.clock });
    // One per link: an attempt that timed out may have made a lease all the same; the next
    // attempt, with this key, is given it (Registration.retryKey) instead of a 409.
    this.retryKey = randomBytes(18).toString('base64url');
    this.firstAttempt = new Promise((resolve) => { this.settleFirst = resolve; });
  }

  /** Starts the loop; resolves after the first registration attempt (success or not). */
  start(): Promise<void> {
    this.running ??= this.run();
    return this.firstAttempt;
  }

  get leaseId(): string | undefined {
    return this.lease?.id;
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (!this.stopped) {
      if (!this.lease) {
        const state = this.state;
        try {
          this.lease = await this.registry.register({ ...this.registration(), state, retryKey: this.retryKey });
          this.acked = state;
          this.log.info({ msg: 'registered', registry: this.url, lease: this.lease.id.slice(0, 6), ttl: this.lease.ttl, state });
          backoff = 100;
        } catch (err) {
          this.settleFirst();
          const refused = isTandemError(err) && err.status >= 400 && err.status < 500;
          // The id is held by a lease that will expire (this process, frozen or cut off, before): soon free.
          const held = isTandemError(err) && err.code === 'TANDEM_ERR_REGISTRY_CONFLICT';
          // A refusal (bad token, bad registration) will not fix itself quickly: say so loudly, retry slowly.
          this.log.warn({ msg: 'registration failed', registry: this.url, error: (err as Error).message });
          await sleep(held ? 1000 : refused ? 5000 : backoff);
          backoff = Math.min(backoff * 2, 1000);
          continue;
        }
        this.settleFirst();
      } else if (this.acked !== this.state) {
        // The state changed while this registry could not be reached (a drain begun while it
        // was frozen): it must know before the lease is kept alive, or it keeps sending requests.
        const synced = await this.syncState();
        if (synced === 'expired') this.lease = undefined;
        if (synced !== 'ok') {
          if (synced === 'unreachable') await sleep(backoff);
          backoff = Math.min(backoff * 2, 1000);
          continue;
        }
      }
      if (this.stopped) break;
      const lease = this.lease;
      if (!lease) continue;
      const ka = this.registry.keepAlive(lease.id, { interval: this.heartbeatInterval, timeout: this.answerTimeout });
      this.keepAlive = ka;
      const since = Date.now();
      const woken = new Promise<'resync'>((resolve) => { this.resync = () => resolve('resync'); });
      const loss = await Promise.race([ka.lost.then((l) => l, () => undefined), woken]);
      this.resync = undefined;
      if (loss === 'resync') {
        // The stream may be fine while the state never arrived (a gateway that was unreachable
        // and came back on this very stream): send it first, then a new stream.
        if (!this.stopped) await ka.close();
        continue;
      }
      if (this.stopped || loss === undefined) break;
      // A stream that lasted was a working connection: the next outage starts from a short backoff.
      if (Date.now() - since > 2 * this.heartbeatInterval) backoff = 100;
      if (loss.kind === 'expired') {
        this.log.warn({ msg: 'lease lost; registering again', registry: this.url });
        if (this.lease === lease) this.lease = undefined;
      } else {
        // Said once per outage: while the gateway stays away, each retry fails the same way.
        if (backoff === 100) {
          if (loss.silentMs !== undefined) this.log.warn({ msg: 'registry not answering; reconnecting', registry: this.url, silentMs: Math.round(loss.silentMs) });
          else this.log.warn({ msg: 'registry connection lost; reconnecting', registry: this.url, error: loss.error.message });
        }
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** Sends the wanted state for the current lease again; 'expired' when the registry no longer knows the lease. */
  private async syncState(): Promise<'ok' | 'expired' | 'unreachable' | 'stale'> {
    const lease = this.lease;
    const state = this.state;
    if (!lease) return 'expired';
    try {
      await withTimeout(this.registry.setState(lease.id, state), this.answerTimeout + 1000);
    } catch (err) {
      if (isTandemError(err) && err.code === 'TANDEM_ERR_LEASE_NOT_FOUND') return 'expired';
      return 'unreachable';
    }
    if (this.lease !== lease) return 'stale';
    this.acked = state;
    this.log.info({ msg: 'state sent again', registry: this.url, state });
    return 'ok';
  }

  /** Tells the registry the new state; resolves when it acknowledged (or could not be reached). */
  async setState(state: InstanceState, timeoutMs: number): Promise<boolean> {
    this.state = state;
    const lease = this.lease;
    if (!lease) return false;
    try {
      await withTimeout(this.registry.setState(lease.id, state), timeoutMs);
      if (this.lease === lease && this.state === state) this.acked = state;
      return true;
    } catch (err) {
      this.log.warn({ msg: 'state change not acknowledged', registry: this.url, state, error: (err as Error).message });
      this.resync?.();
      return false;
    }
  }

  /** Stops heartbeating and deregisters. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    this.settleFirst();
    const lease = this.lease;
    this.lease = undefined;
    if (lease) {
      try {
        await withTimeout(this.registry.deregister(lease.id), timeoutMs);
      } catch (err) {
        this.log.warn({ msg: 'deregistration failed; the lease will expire', registry: this.url, error: (err as Error).message });
      }
    }
    await this.keepAlive?.close();
    await this.registry.close();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `no answer within ${ms} ms`, { retryable: true })), ms); }),
  ]);
}
