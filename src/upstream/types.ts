import type { Duplex, Readable } from 'node:stream';
import type { Endpoint } from './endpoint.js';
import type { TandemError } from '../core/errors.js';

/** A request as the upstream engine sees it; the gateway and the service client both build these. */
export interface UpstreamRequest {
  method: string;
  /** Path and query, already rewritten for the upstream. */
  path: string;
  /** Flat [name, value, name, value, …] list, hop-by-hop headers already removed. */
  headers: string[];
  /** A stream for bodies of unknown or large size, a Buffer when already in memory, null for none. */
  body: Readable | Buffer | null;
  /** Key for consistent hashing, when the service hashes. */
  hashKey: string | undefined;
  /** The body's length when declared (Content-Length); -1 or unset when unknown. */
  bodyLength?: number;
  /** Bytes of a streamed body past which the exchange is aborted with TANDEM_ERR_BODY_TOO_LARGE. */
  bodyLimit: number;
  /** Set for a protocol upgrade (e.g. 'websocket'). */
  upgrade?: string;
  /** Wait for response headers over all attempts (ms); unset = the service's `timeout`. */
  timeoutMs?: number;
}

/**
 * Receives one response. The shape mirrors undici's dispatch handler so the bytes flow through
 * without adapters: return false from onHeaders/onData to pause, call `resume` to continue.
 */
export interface ResponseHandler {
  /** The endpoint chosen and an abort for the exchange (e.g. when the client goes away). */
  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void;
  /** An attempt (first, retry or hedge) goes to `endpoint`, before it has a connection (for logs). */
  onAttempt?(endpoint: Endpoint): void;
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean;
  /** `last` is true when this chunk completes a body of known length (onComplete follows). */
  onData(chunk: Buffer, last: boolean): boolean;
  onComplete(): void;
  /** The exchange failed; `error.status` says which HTTP status a proxy should answer with. */
  onError(error: TandemError): void;
  /** For upgrade requests: the upstream switched protocols and hands over its socket. */
  onUpgrade?(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void;
}
