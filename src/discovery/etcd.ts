import { createHash } from 'node:crypto';
import { TandemError } from '../core/errors.js';
import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';
import { EtcdClient } from './etcd-client.js';
import { parseEtcdOptions, type EtcdRegistryOptions } from './etcd-options.js';
import { EtcdWatch, type KeyValue } from './etcd-watch.js';
import { Latest } from './latest.js';
import { checkRegistration, checkState, type RegistrationLimits } from './registration.js';
import type {
  Instance, InstanceState, KeepAlive, KeepAliveOptions, Lease, LeaseLoss, Registration, Registry, ServiceSnapshot, WatchOptions,
} from './types.js';

interface Header { revision?: string }
interface RangeResponse { header: Header; kvs?: KeyValue[] }
interface TxnResponse { header: Header; succeeded?: boolean; responses?: Array<{ response_range?: { kvs?: KeyValue[] } }> }

const LIMITS: RegistrationLimits = { maxMetadataSize: DISCOVERY_DEFAULTS.maxMetadataSize, minTtl: DISCOVERY_DEFAULTS.minTtl, maxTtl: DISCOVERY_DEFAULTS.maxTtl };
/** What a reader accepts from etcd: the same checks, but it takes whatever TTL a writer chose. */
const READ_LIMITS: RegistrationLimits = { ...LIMITS, minTtl: 0, maxTtl: Number.MAX_SAFE_INTEGER };

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');
/** The key range of everything under `prefix` (etcd's range_end: the prefix with its last byte + 1). */
function rangeEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  bytes[bytes.length - 1]! += 1;
  return bytes.toString('base64');
}

/** etcd's lease ids are int64 in decimal; ours are 16 hex digits (a fixed-length, URL-safe string). */
const leaseIdOf = (etcdId: string): string => BigInt(etcdId).toString(16).padStart(16, '0');
function etcdIdOf(leaseId: string): string | undefined {
  return /^[0-9a-f]{16}$/.test(leaseId) ? BigInt(`0x${leaseId}`).toString() : undefined;
}
const leaseNotFound = () => new TandemError('TANDEM_ERR_LEASE_NOT_FOUND', 'lease not found: it expired or never existed — register again', { status: 404 });

/**
 * The Registry port on etcd (v3, through its JSON gateway; docs/registry.md says why not the
 * etcd3 package). An instance is one key, `<prefix>/services/<service>/<id>`, attached to its
 * lease: when the lease ends — revoked on deregister, or not kept alive for its TTL — etcd
 * deletes the key, and every watcher sees it go. A registration is a transaction that writes
 * the key only if it does not exist, so a live instance cannot be taken over by another.
 * Values read back are checked like a registration (address policy included): a key written by
 * something else into the prefix is skipped, not trusted.
 */
export class EtcdRegistry implements Registry {
  readonly prefix: string;
  readonly ttl: number;
  private readonly client: EtcdClient;
  private readonly checkInterval: number;
  /** The key of each lease registered from this process: spares a lookup on setState/deregister. */
  private readonly keys = new Map<string, string>();
  /** The TTL etcd granted each lease registered from this process (ms): paces its keep-alive. */
  private readonly ttls = new Map<string, number>();
  private readonly watches = new Set<EtcdWatch>();
  private readonly keepAlives = new Set<() => void>();
  private checkTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: EtcdRegistryOptions) {
    const o = parseEtcdOptions(options);
    this.prefix = o.prefix;
    this.ttl = o.ttl;
    this.checkInterval = o.checkInterval;
    this.client = new EtcdClient(o.connection);
  }

  private keyOf(service: string, id: string): string {
    return `${this.prefix}/services/${service}/${id}`;
  }

  private servicePrefix(service: string): string {
    return `${this.prefix}/services/${service}/`;
  }

  async register(registration: Registration): Promise<Lease> {
    const { instance, ttl: asked, retryKey } = checkRegistration(registration, LIMITS);
    const seconds = Math.ceil((asked ?? this.ttl) / 1000);
    const grant = await this.client.call<{ ID: string; TTL: string }>('/v3/lease/grant', { TTL: seconds });
    const key = b64(this.keyOf(instance.service, instance.id));
    const retry = retryKey === undefined ? undefined : retryDigest(retryKey);
    const value = b64(JSON.stringify(stored(instance, retry)));
    const txn = await this.client.call<TxnResponse>('/v3/kv/txn', {
      compare: [{ target: 'CREATE', key, create_revision: '0' }],
      success: [{ request_put: { key, value, lease: grant.ID } }],
      failure: [{ request_range: { key } }],
    });
    if (txn.succeeded !== true) {
      const holder = txn.responses?.[0]?.response_range?.kvs?.[0];
      // Our own write, answered too late the first time and retried on another member.
      if (holder?.lease !== grant.ID) {
        await this.client.call('/v3/lease/revoke', { ID: grant.ID }).catch(() => undefined);
        // An earlier attempt of this registrant (same retry key, same address) that timed out
        // but was written all the same: its lease is this one's, as in the embedded registry.
        if (retry !== undefined && holder?.lease !== undefined && isRetryOf(holder, retry, instance.address)) return await this.adopt(holder.lease, key, value, instance);
        const address = holderAddress(holder);
        throw new TandemError('TANDEM_ERR_REGISTRY_CONFLICT', `${instance.service}/${instance.id} is held by another lease${address}; deregister it or wait for its lease to expire`, { status: 409 });
      }
    }
    const leaseId = leaseIdOf(grant.ID);
    this.keys.set(leaseId, this.keyOf(instance.service, instance.id));
    this.ttls.set(leaseId, Number(grant.TTL) * 1000);
    return { id: leaseId, ttl: Number(grant.TTL) * 1000, instance };
  }

  /**
   * The lease an earlier attempt with the same retry key was given, as this registration's; the
   * key takes this attempt's value (its state may have changed since) if that lease still holds it.
   */
  private async adopt(etcdId: string, key: string, value: string, instance: Instance): Promise<Lease> {
    const txn = await this.client.call<TxnResponse>('/v3/kv/txn', {
      compare: [{ target: 'LEASE', key, lease: etcdId }],
      success: [{ request_put: { key, value, lease: etcdId } }],
    });
    if (txn.succeeded !== true) throw new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `${instance.service}/${instance.id}: the lease of an earlier attempt ended while it was taken over; register again`, { retryable: true });
    const left = await this.client.call<{ TTL?: string; grantedTTL?: string }>('/v3/lease/timetolive', { ID: etcdId });
    const ttl = Number(left.grantedTTL ?? 0) * 1000;
    // Ended since the transaction (an expired lease says TTL -1): registered again, not kept.
    if (!(ttl > 0) || Number(left.TTL ?? 0) < 0) throw new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `${instance.service}/${instance.id}: the lease of an earlier attempt ended while it was taken over; register again`, { retryable: true });
    const leaseId = leaseIdOf(etcdId);
    this.keys.set(leaseId, this.keyOf(instance.service, instance.id));
    this.ttls.set(leaseId, ttl);
    return { id: leaseId, ttl, instance };
  }

  /** `timeout`: the longest wait for one member's answer (default: the connection's requestTimeout). */
  async heartbeat(leaseId: string, timeout?: number): Promise<void> {
    const id = etcdIdOf(leaseId);
    if (id === undefined) throw leaseNotFound();
    const res = await this.client.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: id }, timeout);
    if (!(Number(res.result?.TTL ?? 0) > 0)) {
      this.keys.delete(leaseId);
      this.ttls.delete(leaseId);
      throw leaseNotFound();
    }
  }

  /**
   * One keep-alive request per interval. The answer says at once when the lease is gone
   * (revoked, or expired while this process was frozen): `lost` is then `expired` and the SDK
   * registers again. A beat that no member answers makes `lost` `disconnected`.
   */
  keepAlive(leaseId: string, options: KeepAliveOptions): KeepAlive {
    // Paced by the lease as well: a beat every TTL/3 at most, and a member that does not answer
    // a beat within TTL/3 is left for the next one — so that one frozen or cut-off member (its
    // beat waited out, then the next member asked) still renews the lease inside its TTL. With
    // the connection's 2 s timeout and a 3 s TTL, a beat stuck on a frozen member let etcd expire
    // the lease of a live instance (drill:etcd, leader-freeze).
    const third = Math.max(100, Math.floor((this.ttls.get(leaseId) ?? this.ttl) / 3));
    const interval = Math.min(options.interval, third);
    const timeout = Math.min(options.timeout ?? third, third);
    let settle!: (loss: LeaseLoss) => void;
    const lost = new Promise<LeaseLoss>((resolve) => { settle = resolve; });
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      done = true;
      clearTimeout(timer);
      this.keepAlives.delete(stop);
    };
    const beat = () => {
      if (done) return;
      this.heartbeat(leaseId, timeout).then(() => {
        if (done) return;
        timer = setTimeout(beat, interval);
        timer.unref();
      }, (err: unknown) => {
        if (done) return;
        stop();
        const e = err as TandemError;
        settle(e.code === 'TANDEM_ERR_LEASE_NOT_FOUND' ? { kind: 'expired' } : { kind: 'disconnected', error: e });
      });
    };
    this.keepAlives.add(stop);
    beat();
    return { lost, close: () => { stop(); return Promise.resolve(); } };
  }

  async setState(leaseId: string, stateIn: InstanceState): Promise<void> {
    const state = checkState(stateIn);
    const { id, key, kv } = await this.held(leaseId);
    const current = JSON.parse(unb64(kv.value)) as Record<string, unknown>;
    const txn = await this.client.call<TxnResponse>('/v3/kv/txn', {
      compare: [{ target: 'LEASE', key: b64(key), lease: id }],
      success: [{ request_put: { key: b64(key), value: b64(JSON.stringify({ ...current, state })), lease: id } }],
    });
    if (txn.succeeded !== true) throw leaseNotFound();
  }

  /** Revokes the lease: etcd deletes its key in the same step, so watchers see the instance go at once. */
  async deregister(leaseId: string): Promise<void> {
    const id = etcdIdOf(leaseId);
    this.keys.delete(leaseId);
    this.ttls.delete(leaseId);
    if (id === undefined) return;
    try {
      await this.client.call('/v3/lease/revoke', { ID: id });
    } catch (err) {
      if ((err as TandemError).code !== 'TANDEM_ERR_LEASE_NOT_FOUND') throw err;
    }
  }

  async snapshot(service: string): Promise<ServiceSnapshot> {
    const { revision, kvs } = await this.range(service);
    return snapshotOf(service, revision, kvs);
  }

  /** The members of `service` at one revision (the watch's fresh read). */
  async range(service: string): Promise<{ revision: number; kvs: KeyValue[] }> {
    const prefix = this.servicePrefix(service);
    const res = await this.client.call<RangeResponse>('/v3/kv/range', { key: b64(prefix), range_end: rangeEnd(prefix) });
    return { revision: Number(res.header.revision ?? 0), kvs: res.kvs ?? [] };
  }

  watch(service: string, options: WatchOptions = {}): AsyncIterable<ServiceSnapshot> {
    const prefix = this.servicePrefix(service);
    const watch = new EtcdWatch({
      client: this.client,
      key: b64(prefix),
      rangeEnd: rangeEnd(prefix),
      read: () => this.range(service),
      publish: (revision, kvs) => latest.push(snapshotOf(service, revision, kvs)),
    });
    const latest: Latest<ServiceSnapshot> = new Latest(() => {
      watch.stop();
      this.watches.delete(watch);
      if (this.watches.size === 0) this.stopChecks();
    }, options.signal);
    if (this.closed) latest.end();
    if (latest.isEnded) return latest;
    this.watches.add(watch);
    this.startChecks();
    watch.start();
    return latest;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopChecks();
    for (const stop of [...this.keepAlives]) stop();
    for (const w of [...this.watches]) w.stop();
    this.watches.clear();
    await this.client.close();
  }

  /** The lease's key and its current value, or TANDEM_ERR_LEASE_NOT_FOUND. */
  private async held(leaseId: string): Promise<{ id: string; key: string; kv: KeyValue }> {
    const id = etcdIdOf(leaseId);
    if (id === undefined) throw leaseNotFound();
    let key = this.keys.get(leaseId);
    if (key === undefined) {
      // A lease registered by another process: etcd knows which keys it holds.
      const ttl = await this.client.call<{ TTL?: string; keys?: string[] }>('/v3/lease/timetolive', { ID: id, keys: true });
      if (!(Number(ttl.TTL ?? -1) > 0) || ttl.keys?.length !== 1) throw leaseNotFound();
      key = unb64(ttl.keys[0]);
      if (!key.startsWith(`${this.prefix}/services/`)) throw leaseNotFound();
    }
    const res = await this.client.call<RangeResponse>('/v3/kv/range', { key: b64(key) });
    const kv = res.kvs?.[0];
    if (kv === undefined || kv.lease !== id) throw leaseNotFound();
    return { id, key, kv };
  }

  /**
   * While watches are open, asks the member serving them (linearizably, so only a member with
   * a quorum answers) every checkInterval. A member that does not answer is left: the watches
   * move to the next one and resume from their revision. Without this, a frozen member would
   * hold a watch open and silent, and changes would stop arriving without any error.
   */
  private startChecks(): void {
    if (this.checkTimer !== undefined || this.closed) return;
    const check = () => {
      const at = this.client.endpoint;
      const key = b64(`${this.prefix}/`);
      this.client.callAt(at, '/v3/kv/range', { key, range_end: rangeEnd(`${this.prefix}/`), count_only: true, limit: 1 })
        .catch((err: unknown) => {
          if ((err as TandemError).code === 'TANDEM_ERR_REGISTRY_UNAVAILABLE') this.client.rotate(at);
        })
        .finally(() => {
          if (this.checkTimer !== undefined) this.checkTimer = setTimeout(check, this.checkInterval).unref();
        });
    };
    this.checkTimer = setTimeout(check, this.checkInterval).unref();
  }

  private stopChecks(): void {
    clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
  }
}

/** The instance as written into etcd: a registration, checked again by whoever reads it. */
/** The value of an instance's key; `retry`: the digest of its registrant's retry key. */
function stored(i: Instance, retry: string | undefined): Registration {
  return { service: i.service, id: i.id, address: i.address, ...(i.zone !== undefined ? { zone: i.zone } : {}), weight: i.weight, metadata: { ...i.metadata }, state: i.state, ...(retry !== undefined ? { retryKey: retry } : {}) };
}

/**
 * What a key holds in place of a retry key: its SHA-256 (base64url, 43 characters, itself a
 * valid retry key, so every reader that knows the field accepts the value — `retryKey` has been
 * a registration field since the embedded registry took it). Whoever can read the prefix learns
 * the digest, not the key, and cannot have the lease by retrying.
 */
const retryDigest = (retryKey: string): string => createHash('sha256').update(retryKey).digest('base64url');

/** Whether `kv` was written by an attempt with the retry key of digest `retry`, for `address`. */
function isRetryOf(kv: KeyValue, retry: string, address: string): boolean {
  try {
    const v = JSON.parse(unb64(kv.value)) as { retryKey?: unknown; address?: unknown };
    return v.retryKey === retry && v.address === address;
  } catch {
    return false;
  }
}

function holderAddress(kv: KeyValue | undefined): string {
  try {
    const v = JSON.parse(unb64(kv?.value)) as { address?: unknown };
    return typeof v.address === 'string' ? ` (${v.address})` : '';
  } catch {
    return '';
  }
}

/** The instance a key holds, or undefined when its value is not a valid registration of that key. */
export function instanceOf(service: string, kv: KeyValue): Instance | undefined {
  try {
    const { instance } = checkRegistration(JSON.parse(unb64(kv.value)), READ_LIMITS);
    const key = unb64(kv.key);
    if (instance.service !== service || !key.endsWith(`/${service}/${instance.id}`)) return undefined;
    return instance;
  } catch {
    return undefined;
  }
}

function snapshotOf(service: string, revision: number, kvs: readonly KeyValue[]): ServiceSnapshot {
  const instances: Instance[] = [];
  for (const kv of kvs) {
    const i = instanceOf(service, kv);
    if (i !== undefined) instances.push(i);
  }
  return Object.freeze({ kind: 'snapshot', service, revision, instances: Object.freeze(instances) });
}
