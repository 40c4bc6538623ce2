import { readFileSync } from 'node:fs';
import type { RegistryConfig } from '../config/types.js';
import { ConfigError } from '../config/problems.js';
import { EtcdRegistry } from '../discovery/etcd.js';
import type { EtcdRegistryOptions } from '../discovery/etcd-options.js';
import type { Instance, Registry } from '../discovery/types.js';

/** What changed for one instance between two snapshots of its service. */
export interface MemberChange {
  readonly service: string;
  readonly kind: 'join' | 'leave' | 'drain' | 'state';
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
  private readonly watching = new Map<string, AbortController>();

  constructor(
    readonly registry: Registry,
    private readonly onChange: (service: string, changes: readonly MemberChange[]) => void,
  ) {}

  /** The instances of `service` as last seen (empty before the first snapshot). */
  instances(service: string): Iterable<Instance> {
    return this.snapshots.get(service)?.values() ?? [];
  }

  /** Watches exactly `services` from now on. */
  follow(services: Iterable<string>): void {
    const wanted = new Set(services);
    for (const [service, ac] of this.watching) {
      if (wanted.has(service)) continue;
      ac.abort();
      this.watching.delete(service);
      this.snapshots.delete(service);
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
          const changes = diff(service, before, after);
          if (changes.length > 0) this.onChange(service, changes);
        }
      } catch {
        // A watch ends only when closed; the members it gave stay.
      }
    })();
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
