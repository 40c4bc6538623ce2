import type { Instance, Registry, ServiceSnapshot } from '../discovery/types.js';
import type { EndpointConfig } from '../config/types.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';

/**
 * The members of one service as a client should use them, from one or more registries (one
 * per gateway). Ready instances of every registry are merged. An instance seen draining leaves
 * at once. An instance that vanishes without having drained — its registry restarted and has not
 * heard from it yet, or it crashed — is kept for `holdMs` more: a restarted registry is empty
 * until every instance has registered again, and dropping them all would fail calls that the
 * instances could answer; a crashed one is found out by health checks and retries meanwhile.
 */
export class Members {
  /** Ready instances per registry (by `id`), as of its last snapshot. */
  private readonly ready = new Map<number, Map<string, Instance>>();
  /** Draining instances per registry (by `id`), as of its last snapshot. */
  private readonly draining = new Map<number, Set<string>>();
  /** Instances gone from a registry without draining, and until when they are kept. */
  private readonly held = new Map<string, { instance: Instance; until: number }>();
  private timer: TimerHandle | undefined;
  private readonly aborts = new AbortController();
  private first: Promise<void>;
  private resolveFirst!: () => void;

  constructor(
    private readonly service: string,
    private readonly registries: readonly Registry[],
    private readonly apply: (members: EndpointConfig[]) => void,
    private readonly holdMs: number,
    private readonly clock: Clock = realClock,
  ) {
    this.first = new Promise((resolve) => { this.resolveFirst = resolve; });
    registries.forEach((registry, i) => void this.follow(registry, i));
  }

  /** Resolves once any registry has sent a snapshot. */
  get known(): Promise<void> {
    return this.first;
  }

  private async follow(registry: Registry, index: number): Promise<void> {
    try {
      for await (const snapshot of registry.watch(this.service, { signal: this.aborts.signal })) this.update(index, snapshot);
    } catch {
      // The watch ends only when closed; an adapter that fails keeps the members it gave.
    }
  }

  private update(index: number, snapshot: ServiceSnapshot): void {
    const before = this.ready.get(index) ?? new Map<string, Instance>();
    const now = new Map<string, Instance>();
    const draining = new Set<string>();
    for (const instance of snapshot.instances) {
      if (instance.state === 'ready') now.set(instance.id, instance);
      else draining.add(instance.id);
      this.held.delete(instance.id);
    }
    for (const [id, instance] of before) {
      if (!now.has(id) && !draining.has(id) && !this.held.has(id)) this.held.set(id, { instance, until: this.clock.now() + this.holdMs });
    }
    this.ready.set(index, now);
    this.draining.set(index, draining);
    this.publish();
    this.resolveFirst();
  }

  /** Computes the members and hands them over; arms a timer for the next hold to end. */
  private publish(): void {
    const t = this.clock.now();
    const byId = new Map<string, Instance>();
    let nextExpiry = Infinity;
    for (const [id, h] of this.held) {
      if (h.until <= t) {
        this.held.delete(id);
        continue;
      }
      nextExpiry = Math.min(nextExpiry, h.until);
      byId.set(id, h.instance);
    }
    for (const ready of this.ready.values()) for (const [id, instance] of ready) byId.set(id, instance);
    for (const ids of this.draining.values()) for (const id of ids) byId.delete(id);
    // One endpoint per address, whatever the ids (the same instance registered in two gateways).
    const byAddress = new Map<string, EndpointConfig>();
    for (const i of byId.values()) byAddress.set(i.address, { host: i.host, port: i.port, weight: i.weight, ...(i.tls === true ? { tls: true } : {}) });
    this.apply([...byAddress.values()]);
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = nextExpiry === Infinity ? undefined : this.clock.setTimeout(() => this.publish(), nextExpiry - t + 1);
  }

  close(): void {
    this.aborts.abort();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
