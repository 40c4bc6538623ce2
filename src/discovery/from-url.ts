import { OptionsError, stringOrStrings, type Rule } from '../core/options.js';
import { EtcdRegistry } from './etcd.js';
import { etcdOptionsFromUrl, isEtcdUrl, parseEtcdOptions } from './etcd-options.js';
import { HttpRegistry, type HttpRegistryOptions } from './http.js';
import type { Registry } from './types.js';

/**
 * The registry a URL names, for serve() and createClient(): `etcd://host:port,…` (or
 * `etcds://`) is etcd; anything else is a gateway's admin listener (`http://…`), whose
 * `token` is the gateway's secret.
 */
export function registryFromUrl(url: string, token: string | undefined, http: Pick<HttpRegistryOptions, 'timeout' | 'clock'> = {}): Registry {
  if (isEtcdUrl(url)) return new EtcdRegistry(etcdOptionsFromUrl(url));
  return new HttpRegistry({ url, token, ...http });
}

/**
 * The `registry` option of serve() and createClient(): a URL or a list of them, an etcd:// one
 * checked whole (members, parameters, readable PEM files) when the options are, not when the
 * first registration is tried.
 */
export const registryUrls: Rule = (value, path, problems) => {
  const before = problems.length;
  stringOrStrings(value, path, problems);
  if (problems.length > before) return;
  const urls = typeof value === 'string' ? [value] : value as string[];
  urls.forEach((url, i) => {
    if (!isEtcdUrl(url)) return;
    const at = typeof value === 'string' ? path : `${path}[${i}]`;
    try {
      parseEtcdOptions(etcdOptionsFromUrl(url));
    } catch (err) {
      const inner = err instanceof OptionsError ? err.problems : [{ path: '', message: (err as Error).message }];
      for (const p of inner) {
        const where = p.path.replace(/^options\.|^registry/, '');
        problems.push({ path: at, message: where === '' ? p.message : `${where}: ${p.message}` });
      }
    }
  });
};
