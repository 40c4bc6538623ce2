import { randomBytes, timingSafeEqual } from 'node:crypto';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { TandemError } from '../core/errors.js';
import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';
import { Latest } from './latest.js';
import { checkRegistration, checkState, type RegistrationLimits } from './registration.js';
import type {
  Instance, InstanceState, KeepAlive, KeepAliveOptions, Lease, LeaseLoss, Registration, Registry, ServiceSnapshot, WatchOptions,
} from './types.js';

export interface EmbeddedRegistryOptions extends Partial<RegistrationLimits> {
  clock?: Clock;
  /** Lease TTL when a registration asks for none (ms). */
  ttl?: number;
  /** Instances in all; past it a registration gets 429. */
  maxInstances?: number;
  /** Instances registered from one peer (IP address); past it a registration gets 429. */
  maxInstancesPerPeer?: number;
}

/** The registry's share of core/defaults/discovery.ts. */
export const EMBEDDED_DEFAULTS = Object.freeze({
  ttl: DISCOVERY_DEFAULTS.ttl,
  minTtl: DISCOVERY_DEFAULTS.minTtl,
  maxTtl: DISCOVERY_DEFAULTS.maxTtl,
  maxMetadataSize: DISCOVERY_DEFAULTS.maxMetadataSize,
  maxInstances: DISCOVERY_DEFAULTS.maxInstances,
  maxInstancesPerPeer: DISCOVERY_DEFAULTS.maxInstancesPerPeer,
});

/** Who is registering: the peer's IP address, for the per-peer limit. */
export interface RegisterContext {
  peer?: string;
}

/**
 * Why an instance left the registry:
 * - `drained`: deregistered after it had marked itself draining (the SDK's SIGTERM path);
 * - `deregistered`: deregistered without draining first;
 * - `connection-lost`: its keep-alive stream broke before the body ended — the process died
 *   and its kernel closed the socket (kind `expired`);
 * - `lease-expired`: no heartbeat within the TTL — a frozen or unreachable process (kind `expired`).
 */
export type LeaveCause = 'drained' | 'deregistered' | 'connection-lost' | 'lease-expired';

/** A change the registry made, as its synchronous subscribers see it. */
export interface RegistryChange {
  readonly kind: 'registered' | 'state' | 'deregistered' | 'expired';
  readonly service: string;
  readonly instance: Instance;
  readonly revision: number;
  /** Why the instance left: set on `deregistered` and `expired` changes only. */
  readonly cause?: LeaveCause;
}

interface Entry {
  readonly leaseId: string;
  instance: Instance;
  readonly ttl: number;
  expiresAt: number;
  readonly peer: string;
  /** Registration.retryKey: the registrant's secret, which lets its retry have this lease. */
  readonly retryKey: string | undefined;
  /** The keep-alive in this process, told when the lease ends. */
  lost: ((loss: LeaseLoss) => void) | undefined;
}

interface ServiceEntries {
  readonly members: Map<string, Entry>;
  revision: number;
  snapshot: ServiceSnapshot | undefined;
}

/**
 * The registry kept in the gateway process: soft state, gone when the process goes (instances
 * register again; see the node SDK). A lease expires `ttl` after its last heartbeat. Expiry
 * costs nothing per heartbeat: a heartbeat only moves the entry's deadline, and one sweep timer
 * set to the earliest deadline removes what is due (a sweep that finds nothing due re-arms at
 * the new earliest deadline, so at 10 000 leases renewed every second it runs about once per TTL).
 */
export class EmbeddedRegistry implements Registry {
  readonly limits: Readonly<RegistrationLimits & { ttl: number; maxInstances: number; maxInstancesPerPeer: number }>;
  private readonly clock: Clock;
  private readonly leases = new Map<string, Entry>();
  private readonly services = new Map<string, ServiceEntries>();
  private readonly perPeer = new Map<string, number>();
  private subscribers: Array<(change: RegistryChange) => void> = [];
  private readonly watchers = new Map<string, Set<Latest<ServiceSnapshot>>>();
  private revision = 0;
  private sweepTimer: TimerHandle | undefined;
  private sweepAt = Infinity;
  private closed = false;

  constructor(options: EmbeddedRegistryOptions = {}) {
    this.clock = options.clock ?? realClock;
    this.limits = Object.freeze({
      ttl: options.ttl ?? EMBEDDED_DEFAULTS.ttl,
      minTtl: options.minTtl ?? EMBEDDED_DEFAULTS.minTtl,
      maxTtl: options.maxTtl ?? EMBEDDED_DEFAULTS.maxTtl,
      maxMetadataSize: options.maxMetadataSize ?? EMBEDDED_DEFAULTS.maxMetadataSize,
      maxInstances: options.maxInstances ?? EMBEDDED_DEFAULTS.maxInstances,
      maxInstancesPerPeer: options.maxInstancesPerPeer ?? EMBEDDED_DEFAULTS.maxInstancesPerPeer,
    });
  }

  /** Instances held now. */
  get size(): number {
    return this.leases.size;
  }

  get currentRevision(): number {
    return this.revision;
  }

  register(registration: Registration, context: RegisterContext = {}): Promise<Lease> {
    try {
      return Promise.resolve(this.registerNow(registration, context));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** register(), synchronously: throws TandemError (400, 409, 413, 429) for a bad or refused registration. */
  registerNow(registration: unknown, context: RegisterContext = {}): Lease {
    const { instance, ttl: asked, retryKey } = checkRegistration(registration, this.limits);
    const peer = context.peer ?? 'local';
    const previous = this.services.get(instance.service)?.members.get(instance.id);
    if (previous !== undefined && previous.expiresAt > this.clock.now() && isRetry(previous, instance, peer, retryKey)) {
      // The registrant's earlier attempt made this lease, and its answer was lost (the attempt
      // timed out while the registry was slow): a 409 would keep it out until the lease expired.
      this.setStateNow(previous.leaseId, instance.state);
      return { id: previous.leaseId, ttl: previous.ttl, instance: previous.instance };
    }
    if (previous !== undefined) {
      // Another live lease holds the id: taking it over would let one registrant evict
      // another's instance. A stale holder (a frozen process) lets go within its TTL.
      if (previous.expiresAt > this.clock.now()) {
        throw new TandemError('TANDEM_ERR_REGISTRY_CONFLICT', `${instance.service}/${instance.id} is held by another lease (${previous.instance.address}); deregister it or wait for its lease to expire (≤ ${Math.ceil(previous.ttl / 1000)} s)`, { status: 409 });
      }
      // Due, but the sweep has not run yet: it is gone as far as anyone can tell.
      this.drop(previous, 'lease-expired', true);
    }
    if (this.leases.size >= this.limits.maxInstances) {
      throw new TandemError('TANDEM_ERR_REGISTRY_LIMIT', `the registry holds ${this.leases.size} instances, its limit (registry.maxInstances)`, { status: 429 });
    }
    const fromPeer = this.perPeer.get(peer) ?? 0;
    if (fromPeer >= this.limits.maxInstancesPerPeer) {
      throw new TandemError('TANDEM_ERR_REGISTRY_LIMIT', `${fromPeer} instances are registered from ${peer}, its limit (registry.maxInstancesPerPeer)`, { status: 429 });
    }
    const service = this.serviceEntries(instance.service);
    const ttl = asked ?? this.limits.ttl;
    const entry: Entry = { leaseId: newLeaseId(), instance, ttl, expiresAt: this.clock.now() + ttl, peer, retryKey, lost: undefined };
    this.leases.set(entry.leaseId, entry);
    service.members.set(instance.id, entry);
    this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1);
    this.armSweep(entry.expiresAt);
    this.changed('registered', instance);
    return { id: entry.leaseId, ttl, instance };
  }

  heartbeat(leaseId: string): Promise<void> {
    try {
      this.heartbeatNow(leaseId);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Renews a lease; throws TANDEM_ERR_LEASE_NOT_FOUND. The hot path of 10 000 instances: no allocation, no timer. */
  heartbeatNow(leaseId: string): Entry {
    const entry = this.entry(leaseId);
    entry.expiresAt = this.clock.now() + entry.ttl;
    return entry;
  }

  /** True while the lease exists (a cheap check for the HTTP keep-alive stream). */
  has(leaseId: string): boolean {
    return this.leases.has(leaseId);
  }

  keepAlive(leaseId: string, options: KeepAliveOptions): KeepAlive {
    let resolveLost!: (loss: LeaseLoss) => void;
    const lost = new Promise<LeaseLoss>((resolve) => { resolveLost = resolve; });
    let timer: TimerHandle | undefined;
    let done = false;
    const finish = (loss: LeaseLoss | undefined) => {
      if (done) return;
      done = true;
      if (timer) this.clock.clearTimeout(timer);
      const entry = this.leases.get(leaseId);
      if (entry?.lost === onLost) entry.lost = undefined;
      if (loss) resolveLost(loss);
    };
    const onLost = (loss: LeaseLoss) => finish(loss);
    const beat = () => {
      const entry = this.leases.get(leaseId);
      if (!entry) return finish({ kind: 'expired' });
      entry.expiresAt = this.clock.now() + entry.ttl;
      timer = this.clock.setTimeout(beat, options.interval);
    };
    const entry = this.leases.get(leaseId);
    if (entry) entry.lost = onLost;
    beat();
    return { lost, close: () => { finish(undefined); return Promise.resolve(); } };
  }

  /**
   * Lets the HTTP keep-alive stream learn when its lease ends; returns a disposer. The listener
   * runs synchronously inside the removal.
   */
  onLeaseEnd(leaseId: string, listener: (loss: LeaseLoss) => void): () => void {
    const entry = this.entry(leaseId);
    entry.lost = listener;
    return () => {
      if (entry.lost === listener) entry.lost = undefined;
    };
  }

  setState(leaseId: string, state: InstanceState): Promise<void> {
    try {
      this.setStateNow(leaseId, state);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Applies a state change; subscribers (the gateway's upstreams) have applied it when this returns. Also renews the lease. */
  setStateNow(leaseId: string, stateIn: unknown): Instance {
    const state = checkState(stateIn);
    const entry = this.heartbeatNow(leaseId);
    if (entry.instance.state !== state) {
      entry.instance = Object.freeze({ ...entry.instance, state });
      this.changed('state', entry.instance);
    }
    return entry.instance;
  }

  deregister(leaseId: string): Promise<void> {
    this.deregisterNow(leaseId);
    return Promise.resolve();
  }

  /** Removes the instance; false when the lease was unknown. */
  deregisterNow(leaseId: string): boolean {
    const entry = this.leases.get(leaseId);
    if (!entry) return false;
    this.drop(entry, entry.instance.state === 'draining' ? 'drained' : 'deregistered', true);
    return true;
  }

  /** Ends a lease at once: its keep-alive stream broke (the process died; the kernel closed its socket). */
  expireNow(leaseId: string): boolean {
    const entry = this.leases.get(leaseId);
    if (!entry) return false;
    this.drop(entry, 'connection-lost', true);
    return true;
  }

  snapshot(service: string): Promise<ServiceSnapshot> {
    return Promise.resolve(this.snapshotNow(service));
  }

  snapshotNow(service: string): ServiceSnapshot {
    const s = this.services.get(service);
    if (!s) return Object.freeze({ kind: 'snapshot', service, revision: this.revision, instances: [] });
    s.snapshot ??= Object.freeze({ kind: 'snapshot', service, revision: s.revision, instances: Object.freeze([...s.members.values()].map((e) => e.instance)) });
    return s.snapshot;
  }

  /** Every service with at least one instance. */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  watch(service: string, options: WatchOptions = {}): AsyncIterable<ServiceSnapshot> {
    const set = this.watchers.get(service) ?? new Set();
    this.watchers.set(service, set);
    const latest: Latest<ServiceSnapshot> = new Latest(() => {
      set.delete(latest);
      if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
    }, options.signal);
    if (this.closed) latest.end();
    if (!latest.isEnded) {
      set.add(latest);
      latest.push(this.snapshotNow(service));
    }
    return latest;
  }

  /** Calls `listener` synchronously after every change (the gateway applies it to its upstreams there). */
  subscribe(listener: (change: RegistryChange) => void): { dispose(): void } {
    this.subscribers = [...this.subscribers, listener];
    return { dispose: () => { this.subscribers = this.subscribers.filter((l) => l !== listener); } };
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const set of this.watchers.values()) for (const w of [...set]) w.end();
    return Promise.resolve();
  }

  private entry(leaseId: string): Entry {
    const entry = this.leases.get(leaseId);
    if (!entry) throw new TandemError('TANDEM_ERR_LEASE_NOT_FOUND', 'lease not found: it expired or never existed — register again', { status: 404 });
    return entry;
  }

  private serviceEntries(name: string): ServiceEntries {
    let s = this.services.get(name);
    if (!s) {
      s = { members: new Map(), revision: this.revision, snapshot: undefined };
      this.services.set(name, s);
    }
    return s;
  }

  private drop(entry: Entry, cause: LeaveCause, notify: boolean): void {
    this.leases.delete(entry.leaseId);
    const service = this.services.get(entry.instance.service);
    if (service?.members.get(entry.instance.id) === entry) service.members.delete(entry.instance.id);
    const count = (this.perPeer.get(entry.peer) ?? 1) - 1;
    if (count <= 0) this.perPeer.delete(entry.peer);
    else this.perPeer.set(entry.peer, count);
    const lost = entry.lost;
    entry.lost = undefined;
    lost?.({ kind: 'expired' });
    if (notify) {
      this.changed(cause === 'drained' || cause === 'deregistered' ? 'deregistered' : 'expired', entry.instance, cause);
      if (service && service.members.size === 0 && !this.watchers.has(entry.instance.service)) this.services.delete(entry.instance.service);
    }
  }

  private changed(kind: RegistryChange['kind'], instance: Instance, cause?: LeaveCause): void {
    const revision = ++this.revision;
    const service = this.serviceEntries(instance.service);
    service.revision = revision;
    service.snapshot = undefined;
    const change: RegistryChange = cause === undefined ? { kind, service: instance.service, instance, revision } : { kind, service: instance.service, instance, revision, cause };
    for (const listener of this.subscribers) listener(change);
    const watchers = this.watchers.get(instance.service);
    if (watchers) {
      const snapshot = this.snapshotNow(instance.service);
      for (const w of watchers) w.push(snapshot);
    }
  }

  private armSweep(at: number): void {
    if (this.closed || at >= this.sweepAt) return;
    if (this.sweepTimer) this.clock.clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    // +1: a real timer may fire a fraction of a millisecond early.
    this.sweepTimer = this.clock.setTimeout(() => this.sweep(), Math.max(0, at - this.clock.now()) + 1);
  }

  private sweep(): void {
    this.sweepTimer = undefined;
    this.sweepAt = Infinity;
    const now = this.clock.now();
    let next = Infinity;
    const due: Entry[] = [];
    for (const entry of this.leases.values()) {
      if (entry.expiresAt <= now) due.push(entry);
      else if (entry.expiresAt < next) next = entry.expiresAt;
    }
    for (const entry of due) this.drop(entry, 'lease-expired', true);
    if (next < Infinity) this.armSweep(next);
  }
}

function newLeaseId(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * The same registrant asking again: its secret retryKey (compared in constant time), from the
 * same peer, for the same address. Anything else is someone else's claim on the id.
 */
function isRetry(previous: Entry, instance: Instance, peer: string, retryKey: string | undefined): boolean {
  if (retryKey === undefined || previous.retryKey === undefined || previous.peer !== peer || previous.instance.address !== instance.address) return false;
  const a = Buffer.from(retryKey);
  const b = Buffer.from(previous.retryKey);
  return a.length === b.length && timingSafeEqual(a, b);
}
