import { EtcdRegistry } from './etcd.js';
import { etcdOptionsFromUrl, isEtcdUrl } from './etcd-options.js';
import { HttpRegistry } from './http.js';
import type { Registry } from './types.js';

/**
 * The registry a URL names, for serve() and createClient(): `etcd://host:port,…` (or
 * `etcds://`) is etcd; anything else is a gateway's admin listener (`http://…`), whose
 * `token` is the gateway's secret.
 */
export function registryFromUrl(url: string, token: string | undefined, timeout?: number): Registry {
  if (isEtcdUrl(url)) return new EtcdRegistry(etcdOptionsFromUrl(url));
  return new HttpRegistry({ url, token, ...(timeout !== undefined ? { timeout } : {}) });
}
