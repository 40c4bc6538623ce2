import { EtcdClient } from '../discovery/etcd-client.js';
import { etcdOptionsFromUrl, parseEtcdOptions, type EtcdRegistryOptions } from '../discovery/etcd-options.js';
import type { LeaseStore, Term } from './types.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

interface TxnResponse {
  succeeded?: boolean;
  header?: { revision?: string };
}

/**
 * Leases in etcd: `<prefix>/leases/<name>`, created under an etcd lease only when absent. The
 * fencing token is the key's create revision — etcd's own counter, greater for every new term
 * whoever wins it; a side effect in etcd is fenced by a transaction comparing it
 * (`fenceCompare`). etcd counts lease time in whole seconds, at least its minimum TTL (twice
 * its election timeout's heartbeat, 2 s with the defaults): the store's lease may be longer than
 * the candidates' `ttl`, never shorter, so the leader's local deadline stays safe.
 */
export class EtcdLeaseStore implements LeaseStore {
  private readonly client: EtcdClient;
  private readonly prefix: string;
  /** The etcd lease of each term this process holds, by name and token. */
  private readonly held = new Map<string, string>();

  /** `etcd://host:port,…` (as for the registry), or the registry's options. */
  constructor(where: string | EtcdRegistryOptions) {
    const parsed = parseEtcdOptions(typeof where === 'string' ? etcdOptionsFromUrl(where) : where);
    this.client = new EtcdClient(parsed.connection);
    this.prefix = parsed.prefix;
  }

  private keyOf(name: string): string {
    return `${this.prefix}/leases/${name}`;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<number | undefined> {
    const grant = await this.client.call<{ ID: string }>('/v3/lease/grant', { TTL: Math.max(1, Math.ceil(ttlMs / 1000)) });
    const key = b64(this.keyOf(name));
    const txn = await this.client.call<TxnResponse>('/v3/kv/txn', {
      compare: [{ target: 'CREATE', key, create_revision: '0' }],
      success: [{ request_put: { key, value: b64(holder), lease: grant.ID } }],
    });
    if (txn.succeeded !== true) {
      await this.client.call('/v3/lease/revoke', { ID: grant.ID }).catch(() => undefined);
      return undefined;
    }
    const token = Number(txn.header?.revision);
    this.held.set(`${name}\n${token}`, grant.ID);
    return token;
  }

  async renew(name: string, _holder: string, token: number): Promise<boolean> {
    const id = this.held.get(`${name}\n${token}`);
    if (id === undefined) return false;
    const res = await this.client.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: id });
    const alive = Number(res.result?.TTL ?? 0) > 0;
    if (!alive) this.held.delete(`${name}\n${token}`);
    return alive;
  }

  async release(name: string, _holder: string, token: number): Promise<void> {
    const id = this.held.get(`${name}\n${token}`);
    if (id === undefined) return;
    this.held.delete(`${name}\n${token}`);
    // Revoking deletes the key with it: the next candidate creates it at once.
    await this.client.call('/v3/lease/revoke', { ID: id });
  }

  /**
   * The compare clause that fences an etcd transaction to `term`: it succeeds only while the
   * lease key is the one this term created. Put it in the `compare` list of the transaction that
   * writes the side effect.
   */
  fenceCompare(term: Pick<Term, 'name' | 'token'>): object {
    return { target: 'CREATE', key: b64(this.keyOf(term.name)), create_revision: String(term.token) };
  }

  /**
   * A transaction on the store's connection (etcd's `/v3/kv/txn` JSON body), for fenced writes.
   * `succeeded` is always given (etcd's JSON leaves a false one out).
   */
  async txn(body: object): Promise<{ succeeded: boolean }> {
    const res = await this.client.call<TxnResponse>('/v3/kv/txn', body);
    return { succeeded: res.succeeded === true };
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** A lease store in etcd: `etcdLeaseStore('etcd://127.0.0.1:2379,127.0.0.1:22379')`. */
export function etcdLeaseStore(where: string | EtcdRegistryOptions): EtcdLeaseStore {
  return new EtcdLeaseStore(where);
}
