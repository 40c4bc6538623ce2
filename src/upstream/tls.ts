import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';

/**
 * TLS to a service's https:// endpoints, in the engine's terms: PEM contents (the config reads
 * the files, and reads them again on reload), not file names.
 */
export interface UpstreamTls {
  /** CA certificates (PEM) an endpoint's certificate must chain to; undefined = Node's root store. */
  readonly ca: string | undefined;
  /** Client certificate (PEM, its chain after it) and its key, sent to endpoints that ask (mutual TLS). */
  readonly cert: string | undefined;
  readonly key: string | undefined;
  /** SNI and the name the certificate must carry; undefined = the endpoint's host name (no SNI for an IP). */
  readonly servername: string | undefined;
  /** false accepts any certificate (insecureSkipVerify): encryption without authentication. */
  readonly verify: boolean;
}

export const DEFAULT_UPSTREAM_TLS: UpstreamTls = Object.freeze({ ca: undefined, cert: undefined, key: undefined, servername: undefined, verify: true });

/** tls.connect options for an https:// endpoint's connections (undici adds host, port, ALPN and the session cache). */
export function tlsConnectOptions(tls: UpstreamTls): ConnectionOptions {
  return {
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.cert !== undefined && tls.key !== undefined ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
    rejectUnauthorized: tls.verify,
  };
}

/**
 * The name an https:// endpoint's requests carry as their `servername`. undici takes a request's
 * SNI from its Host header when it has none, and starts a new connection whenever it changes
 * ("servername changed"): a gateway forwarding many hosts to one service would churn its
 * connections and send the client's host name as SNI. So every request names one: the configured
 * one, else the endpoint's host (an IP is dropped before it reaches the handshake: sniOf).
 */
export function requestServername(host: string, tls: UpstreamTls): string {
  return tls.servername ?? host;
}

/** SNI never carries an IP address (RFC 6066 §3): undefined lets undici fall back to none. */
export function sniOf(servername: string | null | undefined): string | undefined {
  return servername == null || servername === '' || isIP(servername) !== 0 ? undefined : servername;
}
