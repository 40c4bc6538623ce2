import { hostname, networkInterfaces } from 'node:os';
import { isLoopbackHost } from '../core/secret.js';

/**
 * Whether `host` (a name or address, lower case, no brackets) may be taken for a listener
 * bound to `bound`: the bound address itself, any loopback name or address when the listener
 * is on loopback, and — for a wildcard bind — every address of this host and its host name.
 */
export function isOwnAddress(host: string, bound: string): boolean {
  const h = unmapped(host.toLowerCase());
  const b = unmapped(bound.toLowerCase());
  if (h === b) return true;
  const wildcard = b === '0.0.0.0' || b === '::';
  if (isLoopbackHost(h)) return wildcard || isLoopbackHost(b);
  if (!wildcard) return false;
  if (h === hostname().toLowerCase()) return true;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address.toLowerCase() === h) return true;
  }
  return false;
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
