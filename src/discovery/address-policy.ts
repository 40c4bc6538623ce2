import { BlockList, isIP } from 'node:net';

/**
 * Addresses no instance can have: traffic sent there would reach something that is not a
 * service instance — a cloud metadata service (169.254.169.254), every host of a multicast
 * group, or "this host, any address". IPv4-mapped IPv6 forms (::ffff:169.254.169.254) are
 * refused like the IPv4 ones.
 */
const RULES: ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6', string]> = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified ("this network")'],
  ['169.254.0.0', 16, 'ipv4', 'link-local'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['255.255.255.255', 32, 'ipv4', 'broadcast'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const lists = RULES.map(([net, prefix, family, what]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, family);
  return { list, family, what };
});

/** Why `ip` (a literal address) cannot be an instance's address, or undefined when it can. */
export function forbiddenAddress(ip: string): string | undefined {
  let addr = ip;
  let family = isIP(addr);
  if (family === 6) {
    const mapped = mappedIPv4(addr);
    if (mapped !== undefined) {
      addr = mapped;
      family = 4;
    }
  }
  if (family === 0) return undefined;
  for (const { list, family: f, what } of lists) {
    if ((f === 'ipv4') === (family === 4) && list.check(addr, f)) return `${ip} is a ${what} address, never a service instance`;
  }
  return undefined;
}

/** The IPv4 address inside an IPv4-mapped IPv6 one, in any of its spellings, else undefined. */
function mappedIPv4(ip: string): string | undefined {
  // The URL parser writes every spelling the same way: [::ffff:a9fe:a9fe].
  const canonical = new URL(`http://[${ip}]`).hostname;
  const hex = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/.exec(canonical);
  if (!hex) return undefined;
  const hi = parseInt(hex[1]!, 16);
  const lo = parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}
