import { readFileSync } from 'node:fs';
import type { RegistryConfig } from '../config/types.js';
import { ConfigError } from '../config/problems.js';
import { EtcdRegistry } from '../discovery/etcd.js';
import type { EtcdRegistryOptions } from '../discovery/etcd-options.js';
import type { Instance, Registry } from '../discovery/types.js';

/**
 * What changed for one instance between two snapshots of its service. `lost`: it left the
 * registry while ready (its lease ended without a drain) and is kept while it keeps passing its
 * health checks; `leave` follows when they fail (or at once when it is not kept).
 */
export interface MemberChange {
  readonly service: string;
  readonly kind: 'join' | 'leave' | 'drain' | 'state' | 'lost';
  readonly instance: Instance;
}

/**
 * The members of the gateway's services as an outside registry (etcd) lists them: one watch per
 * service, the last snapshot of each kept. While the registry cannot be reached the watches
 * retry by themselves and the last snapshot stays — the gateway keeps routing to the members it
 * knows, its health checks still judging them (static stability).
 */
export class ExternalMembers {
  private readonly snapshots = new Map<string, ReadonlyMap<string, Instance>>();
  /** Instances gone from the registry while ready, kept while `keep` says they serve, by service and id. */
  private readonly lost = new Map<string, Map<string, Instance>>();
  private readonly watching = new Map<string, AbortController>();

  /**
   * `keep(service, instance)`: whether an instance that left the registry while ready (its lease
   * ended, no drain before) still serves — passes its active health checks — and is kept until
   * `forget` (Envoy keeps a host gone from discovery while it passes its checks). A registry can
   * end the lease of a live instance: an etcd leader woken from a stall revokes leases it saw
   * unrenewed (etcd#15247, in etcd < 3.4.25 and < 3.5.8), and while etcd has no quorum the
   * instance cannot register again. A crashed or frozen instance has failed its checks by then.
   */
  constructor(
    readonly registry: Registry,
    private readonly onChange: (service: string, changes: readonly MemberChange[]) => void,
    private readonly keep: (service: string, instance: Instance) => boolean = () => false,
  ) {}

  /** The instances of `service` as last seen (empty before the first snapshot), and those kept after leaving. */
  *instances(service: string): Iterable<Instance> {
    const snapshot = this.snapshots.get(service);
    if (snapshot) yield* snapshot.values();
    for (const i of this.lost.get(service)?.values() ?? []) if (!snapshot?.has(i.id)) yield i;
  }

  /** A kept instance at `address` failed its checks: it leaves now (a `leave` change). */
  forget(service: string, address: string): void {
    const kept = this.lost.get(service);
    if (kept === undefined) return;
    const gone = [...kept.values()].filter((i) => i.address === address);
    for (const i of gone) kept.delete(i.id);
    if (gone.length > 0) this.onChange(service, gone.map((instance) => ({ service, kind: 'leave', instance })));
  }

  /** Watches exactly `services` from now on. */
  follow(services: Iterable<string>): void {
    const wanted = new Set(services);
    for (const [service, ac] of this.watching) {
      if (wanted.has(service)) continue;
      ac.abort();
      this.watching.delete(service);
      this.snapshots.delete(service);
      this.lost.delete(service);
    }
    for (const service of wanted) if (!this.watching.has(service)) this.watch(service);
  }

  async close(): Promise<void> {
    for (const ac of this.watching.values()) ac.abort();
    this.watching.clear();
    await this.registry.close();
  }

  private watch(service: string): void {
    const ac = new AbortController();
    this.watching.set(service, ac);
    void (async () => {
      try {
        for await (const snap of this.registry.watch(service, { signal: ac.signal })) {
          const before = this.snapshots.get(service) ?? new Map<string, Instance>();
          const after = new Map(snap.instances.map((i) => [i.id, i]));
          this.snapshots.set(service, after);
          const changes = this.keepLost(service, diff(service, before, after));
          if (changes.length > 0) this.onChange(service, changes);
        }
      } catch {
        // A watch ends only when closed; the members it gave stay.
      }
    })();
  }

  /** A ready instance's leave becomes `lost` while `keep` says it serves; a kept one that registers again is no longer kept. */
  private keepLost(service: string, changes: MemberChange[]): MemberChange[] {
    let kept = this.lost.get(service);
    return changes.map((c) => {
      if (c.kind === 'join') kept?.delete(c.instance.id);
      if (c.kind !== 'leave' || c.instance.state !== 'ready' || !this.keep(service, c.instance)) return c;
      if (kept === undefined) this.lost.set(service, (kept = new Map()));
      kept.set(c.instance.id, c.instance);
      return { ...c, kind: 'lost' };
    });
  }
}

function diff(service: string, before: ReadonlyMap<string, Instance>, after: ReadonlyMap<string, Instance>): MemberChange[] {
  const out: MemberChange[] = [];
  for (const [id, i] of after) {
    const was = before.get(id);
    if (was === undefined) out.push({ service, kind: 'join', instance: i });
    else if (was.state !== i.state) out.push({ service, kind: i.state === 'draining' ? 'drain' : 'state', instance: i });
    else if (was.address !== i.address || was.weight !== i.weight) out.push({ service, kind: 'state', instance: i });
  }
  for (const [id, i] of before) if (!after.has(id)) out.push({ service, kind: 'leave', instance: i });
  return out;
}

/** The etcd registry the config's `registry.etcd…` keys describe (PEM files read now), or undefined. */
export function etcdRegistryOf(r: RegistryConfig): EtcdRegistry | undefined {
  if (r.etcd.length === 0) return undefined;
  const read = (key: 'etcdCa' | 'etcdCert' | 'etcdKey'): string | undefined => {
    const file = r[key];
    if (file === undefined) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([{ path: `registry.${key}`, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
    }
  };
  const tls = { ca: read('etcdCa'), cert: read('etcdCert'), key: read('etcdKey') };
  const secure = Object.values(tls).some((v) => v !== undefined);
  const password = r.etcdPassword ?? (r.etcdUser !== undefined ? process.env.TANDEM_ETCD_PASSWORD : undefined);
  const options: EtcdRegistryOptions = {
    endpoints: r.etcd,
    prefix: r.etcdPrefix,
    ...(r.etcdUser !== undefined ? { username: r.etcdUser, password } : {}),
    ...(secure ? { tls: Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)) } : {}),
  };
  return new EtcdRegistry(options);
}
