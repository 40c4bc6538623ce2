/**
 * The Registry port: who the instances of each service are, kept alive by leases. Adapters:
 * `embedded` (in the gateway, soft state), `http` (the embedded registry of a gateway, over its
 * admin listener), `static` (the endpoints in the config; read-only), `etcd` (keys attached to
 * etcd leases). The writable ones pass one contract suite (test/helpers/registry-contract.ts).
 */

/** `ready` takes new requests; `draining` finishes what it has and gets nothing new. */
export type InstanceState = 'ready' | 'draining';

export const INSTANCE_STATES: readonly InstanceState[] = ['ready', 'draining'];

/** What an instance says about itself when it registers. */
export interface Registration {
  /** Service name: letters, digits, `_`, `.`, `-` (as in the gateway config). */
  service: string;
  /** Unique within the service; registering the same id again replaces the old registration. */
  id: string;
  /** `host:port` (`[v6]:port`) where the instance takes requests; `https://host:port` when it takes them over TLS. */
  address: string;
  zone?: string;
  /** Relative share of traffic, 1–1000. Default 1. */
  weight?: number;
  /** Small string → string map (version, build, …); its JSON is limited in size. */
  metadata?: Record<string, string>;
  /** Default `ready`. */
  state?: InstanceState;
  /** Lease time to live asked for (ms); the registry may clamp it. Default: the registry's. */
  ttl?: number;
  /**
   * A secret of the registrant's (16–128 of letters, digits, `_`, `-`), the same on every
   * attempt: an attempt whose answer was lost (a timeout) created a lease the registrant never
   * learnt, and the next attempt — same key and address (and, in the embedded registry, from
   * the same peer) — is given that lease instead of a 409 until it expires. Never shown to
   * readers. Both registries honour it; etcd keeps its SHA-256 in the key's value, not the key.
   */
  retryKey?: string;
}

/** An instance as the registry holds it. */
export interface Instance {
  readonly service: string;
  readonly id: string;
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** Reached over TLS: registered as `https://host:port` (the address keeps the scheme). */
  readonly tls?: boolean;
  readonly zone: string | undefined;
  readonly weight: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly state: InstanceState;
}

/** Proof of registration: heartbeat it within `ttl` or the instance is removed. */
export interface Lease {
  readonly id: string;
  /** Milliseconds without a heartbeat after which the instance is removed. */
  readonly ttl: number;
  readonly instance: Instance;
}

/**
 * The members of one service at a point in time. `revision` grows with every change the
 * registry makes (to any service); a watcher that sees an older revision than it has ignores it.
 */
export interface ServiceSnapshot {
  readonly kind: 'snapshot';
  readonly service: string;
  readonly revision: number;
  readonly instances: readonly Instance[];
}

/** Why a kept-alive lease ended without close(): it expired or is unknown to the registry, or the registry cannot be reached. */
export type LeaseLoss = { readonly kind: 'expired' } | {
  readonly kind: 'disconnected';
  readonly error: Error;
  /** Set when the registry stopped answering (KeepAliveOptions.timeout) rather than closing: how long it was silent (ms). */
  readonly silentMs?: number;
};

/** A lease being heartbeaten in the background. */
export interface KeepAlive {
  /** Settles once, when the lease is lost (never after close()). */
  readonly lost: Promise<LeaseLoss>;
  /** Stops heartbeating; the lease then runs out on its TTL unless deregistered. */
  close(): Promise<void>;
}

export interface WatchOptions {
  /** Ends the iteration. Breaking out of `for await` does too. */
  signal?: AbortSignal;
}

export interface KeepAliveOptions {
  /** Time between two heartbeats (ms). */
  interval: number;
  /**
   * Longest wait for the registry to answer (ms): the stream's start, and each heartbeat where
   * the registry acknowledges them. Past it the registry is taken for frozen or gone, and `lost`
   * settles `disconnected`. Unset: no such check (an adapter whose registry lives in this
   * process has no use for one).
   */
  timeout?: number;
}

export interface Registry {
  /** Adds (or replaces, same service and id) an instance; resolves once it is visible to watchers. */
  register(registration: Registration): Promise<Lease>;
  /** Renews a lease; rejects with TANDEM_ERR_LEASE_NOT_FOUND when it expired or never existed. */
  heartbeat(leaseId: string): Promise<void>;
  /** Heartbeats in the background, as cheaply as the adapter can (a long-lived stream over HTTP). */
  keepAlive(leaseId: string, options: KeepAliveOptions): KeepAlive;
  /**
   * Changes the instance's state. Resolves once the registry has applied it; the embedded
   * registry answers after its in-process subscribers (the gateway's upstreams) have applied
   * it, so a `draining` acknowledged means that gateway sends the instance no new request.
   */
  setState(leaseId: string, state: InstanceState): Promise<void>;
  /** Removes the instance now. An unknown lease is not an error (it is gone either way). */
  deregister(leaseId: string): Promise<void>;
  /** The current members of a service. */
  snapshot(service: string): Promise<ServiceSnapshot>;
  /**
   * The members of a service now, then after every change. Snapshots are coalesced: a slow
   * consumer sees the latest state, not every step.
   */
  watch(service: string, options?: WatchOptions): AsyncIterable<ServiceSnapshot>;
  /** Releases connections and timers; watches end. */
  close(): Promise<void>;
}
