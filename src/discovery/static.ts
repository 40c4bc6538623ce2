import { formatEndpoint } from '../core/address.js';
import { TandemError } from '../core/errors.js';
import { Latest } from './latest.js';
import type { Instance, InstanceState, KeepAlive, KeepAliveOptions, Lease, Registration, Registry, ServiceSnapshot, WatchOptions } from './types.js';

export interface StaticEndpoint {
  host: string;
  port: number;
  weight: number;
  /** An https:// endpoint. */
  tls?: boolean;
}

function readOnly(): TandemError {
  return new TandemError('TANDEM_ERR_REGISTRY_READ_ONLY', 'the static registry takes no writes: its members come from the config', { status: 405 });
}

/**
 * The endpoints written in the config, as a Registry: every instance is ready, nothing expires,
 * writes are refused. A watch yields the one snapshot and then waits until it is ended.
 */
export class StaticRegistry implements Registry {
  private readonly snapshots = new Map<string, ServiceSnapshot>();
  private readonly open = new Set<Latest<ServiceSnapshot>>();

  constructor(services: ReadonlyMap<string, readonly StaticEndpoint[]> | Record<string, readonly StaticEndpoint[]>) {
    const entries: Array<[string, readonly StaticEndpoint[]]> = services instanceof Map ? [...services.entries()] : Object.entries(services);
    for (const [service, endpoints] of entries) {
      const instances: Instance[] = endpoints.map((ep: StaticEndpoint) => {
        const address = formatEndpoint(ep.host, ep.port, ep.tls);
        return Object.freeze({ service, id: address, address, host: ep.host, port: ep.port, ...(ep.tls === true ? { tls: true } : {}), zone: undefined, weight: ep.weight, metadata: Object.freeze({}), state: 'ready' as const });
      });
      this.snapshots.set(service, Object.freeze({ kind: 'snapshot', service, revision: 1, instances: Object.freeze(instances) }));
    }
  }

  register(_registration: Registration): Promise<Lease> {
    return Promise.reject(readOnly());
  }

  heartbeat(_leaseId: string): Promise<void> {
    return Promise.reject(readOnly());
  }

  keepAlive(_leaseId: string, _options: KeepAliveOptions): KeepAlive {
    throw readOnly();
  }

  setState(_leaseId: string, _state: InstanceState): Promise<void> {
    return Promise.reject(readOnly());
  }

  deregister(_leaseId: string): Promise<void> {
    return Promise.reject(readOnly());
  }

  snapshot(service: string): Promise<ServiceSnapshot> {
    return Promise.resolve(this.snapshotNow(service));
  }

  private snapshotNow(service: string): ServiceSnapshot {
    return this.snapshots.get(service) ?? Object.freeze({ kind: 'snapshot', service, revision: 1, instances: [] });
  }

  watch(service: string, options: WatchOptions = {}): AsyncIterable<ServiceSnapshot> {
    const latest: Latest<ServiceSnapshot> = new Latest(() => this.open.delete(latest), options.signal);
    if (!latest.isEnded) {
      this.open.add(latest);
      latest.push(this.snapshotNow(service));
    }
    return latest;
  }

  close(): Promise<void> {
    for (const l of [...this.open]) l.end();
    return Promise.resolve();
  }
}
