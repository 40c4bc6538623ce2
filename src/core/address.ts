import { isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * Parses `host:port` (`[v6]:port` for IPv6). Returns a reason string when malformed.
 * `allowZero` accepts port 0 (listeners: the OS picks a free port).
 */
export function parseHostPort(value: unknown, allowZero = false): HostPort | string {
  if (typeof value !== 'string') return 'expected "host:port"';
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value);
  if (scheme) {
    const rest = value.slice(scheme[0].length).replace(/\/.*$/, '');
    return `a URL is not an address: write "${rest || 'host:port'}" (no ${scheme[1]}://${rest.length < value.length - scheme[0].length ? ', no path' : ''})`;
  }
  let host: string;
  let portText: string;
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    if (end < 0 || value[end + 1] !== ':') return 'expected "[ipv6]:port"';
    host = value.slice(1, end);
    portText = value.slice(end + 2);
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else {
    const colon = value.lastIndexOf(':');
    if (colon <= 0) return 'expected "host:port", e.g. 127.0.0.1:8080';
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.includes(':')) return 'IPv6 addresses go in brackets: "[::1]:8080"';
    // All digits and dots: meant as IPv4, so it must be one (300.1.1.1 is not a host name either).
    if (/^[\d.]+$/.test(host) && isIP(host) !== 4) return `"${host}" is not a valid IPv4 address (four numbers from 0 to 255)`;
    if (isIP(host) === 0 && !HOSTNAME_RE.test(host)) return `"${host}" is not a valid host name or IP address`;
  }
  if (!/^\d{1,5}$/.test(portText)) return `"${portText}" is not a port number`;
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowZero)) return `port ${port} is out of range (${allowZero ? 0 : 1}-65535)`;
  return { host, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An instance's address with how to reach it: plaintext HTTP, or TLS (`https://host:port`). */
export interface EndpointAddress extends HostPort {
  tls: boolean;
}

/**
 * Parses an endpoint: `host:port` (plaintext), `http://host:port` (the same) or
 * `https://host:port` (TLS). Nothing may follow the port: an endpoint is an address, not a
 * URL. Returns a reason string when malformed.
 */
export function parseEndpointAddress(value: unknown): EndpointAddress | string {
  if (typeof value !== 'string') return 'expected "host:port" or "https://host:port"';
  const scheme = /^(https?):\/\//i.exec(value);
  if (scheme === null) {
    const hp = parseHostPort(value);
    return typeof hp === 'string' ? hp.replace(/^a URL is not an address: .*/, 'only http:// and https:// may precede "host:port"') : { ...hp, tls: false };
  }
  const rest = value.slice(scheme[0].length);
  const end = rest.search(/[/?#]/);
  if (end >= 0) return `nothing may follow the port: write "${scheme[0]}${rest.slice(0, end)}"`;
  const hp = parseHostPort(rest);
  return typeof hp === 'string' ? hp : { ...hp, tls: scheme[1]!.toLowerCase() === 'https' };
}

/**
 * The one spelling of an endpoint, used as its id (metrics, logs, the dashboard, the registry's
 * `address`): `host:port` for plaintext, `https://host:port` for TLS — so the same host and port
 * reached both ways are two endpoints, each with its own connections.
 */
export function formatEndpoint(host: string, port: number, tls = false): string {
  return tls ? `https://${formatHostPort(host, port)}` : formatHostPort(host, port);
}
