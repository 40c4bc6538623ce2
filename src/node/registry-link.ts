import { isTandemError } from '../core/errors.js';
import { registryFromUrl } from '../discovery/from-url.js';
import type { InstanceState, KeepAlive, Lease, Registration, Registry } from '../discovery/types.js';
import { TandemError } from '../core/errors.js';

export interface LinkLogger {
  info(fields: Record<string, unknown>): void;
  warn(fields: Record<string, unknown>): void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * One instance's membership in one registry: registers, keeps the lease alive over a
 * long-lived stream, and registers again whenever the lease is lost (the registry restarted,
 * or the lease expired while this process was stalled), with backoff while it is unreachable.
 */
export class RegistryLink {
  readonly url: string;
  readonly registry: Registry;
  private lease: Lease | undefined;
  private keepAlive: KeepAlive | undefined;
  private stopped = false;
  private state: InstanceState = 'ready';
  private readonly firstAttempt: Promise<void>;
  private settleFirst!: () => void;
  private running: Promise<void> | undefined;

  constructor(
    url: string,
    token: string | undefined,
    private readonly registration: () => Registration,
    private readonly heartbeatInterval: number,
    private readonly log: LinkLogger,
  ) {
    this.url = url;
    this.registry = registryFromUrl(url, token, 3000);
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
        try {
          this.lease = await this.registry.register({ ...this.registration(), state: this.state });
          this.log.info({ msg: 'registered', registry: this.url, lease: this.lease.id.slice(0, 6), ttl: this.lease.ttl });
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
      }
      if (this.stopped) break;
      const lease = this.lease;
      const ka = this.registry.keepAlive(lease.id, { interval: this.heartbeatInterval });
      this.keepAlive = ka;
      const since = Date.now();
      const loss = await ka.lost.then((l) => l, () => undefined);
      if (this.stopped || loss === undefined) break;
      // A stream that lasted was a working connection: the next outage starts from a short backoff.
      if (Date.now() - since > 2 * this.heartbeatInterval) backoff = 100;
      if (loss.kind === 'expired') {
        this.log.warn({ msg: 'lease lost; registering again', registry: this.url });
        if (this.lease === lease) this.lease = undefined;
      } else {
        // Said once per outage: while the gateway stays away, each retry fails the same way.
        if (backoff === 100) this.log.warn({ msg: 'registry connection lost; reconnecting', registry: this.url, error: loss.error.message });
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** Tells the registry the new state; resolves when it acknowledged (or could not be reached). */
  async setState(state: InstanceState, timeoutMs: number): Promise<boolean> {
    this.state = state;
    const lease = this.lease;
    if (!lease) return false;
    try {
      await withTimeout(this.registry.setState(lease.id, state), timeoutMs);
      return true;
    } catch (err) {
      this.log.warn({ msg: 'state change not acknowledged', registry: this.url, state, error: (err as Error).message });
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
