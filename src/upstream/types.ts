import type { Duplex, Readable } from 'node:stream';
import type { Endpoint } from './endpoint.js';
import type { TandemError } from '../core/errors.js';
import type { Flight } from './flight.js';
import type { GrpcCall } from './grpc.js';

/** Response trailers (HTTP/2), by lower-case name; empty when none came. */
export type Trailers = Readonly<Record<string, string | string[] | undefined>>;

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
  /** At most this many attempts (retries and hedges included), below the service's `retry.attempts`: a cache's probe of a failing origin is one. */
  maxAttempts?: number;
  /**
   * A gRPC call (the service's `protocol: grpc`): its outcome is read from `grpc-status`, its
   * retry and hedging follow `idempotent` rather than the method (always POST), and each
   * attempt tells the endpoint the time left in `grpc-timeout`.
   */
  grpc?: GrpcCall;
  /**
   * Set by the engine (its concurrency-limit step), never by a caller: what the steps below
   * share about this request — its deadline, attempts, the endpoints tried (flight.ts).
   */
  flight?: Flight;
}

/**
 * One attempt — a leg of a request — as the steps above the pool see it: passed as the last
 * argument of onStart, onHeaders and onError, so a step running several legs (retry, hedge)
 * knows which one spoke and can give it up. Callers outside the engine ignore it.
 */
export interface Leg {
  readonly endpoint: Endpoint;
  /** Still waiting for its response headers. */
  readonly live: boolean;
  /** undici may have written the request: a failure while this is false never reached the endpoint. */
  readonly sent: boolean;
  /**
   * It lost a race: is that held against its endpoint? Yes when the endpoint answered nothing
   * since it went out, is not cold, and was not charged for this silence already (records the
   * charge: Attempt.chargeSilence).
   */
  chargeSilence(): boolean;
  /** undici's abort for the exchange, once it has a connection. */
  readonly abortFn: ((reason?: Error) => void) | undefined;
  /**
   * No more callbacks from it. `cancelled`: it merely lost a race, so its end says nothing
   * about its endpoint (not counted as a failure or a latency sample).
   */
  abandon(cancelled?: boolean): void;
}

/**
 * Receives one response. The shape mirrors undici's dispatch handler so the bytes flow through
 * without adapters: return false from onHeaders/onData to pause, call `resume` to continue.
 */
export interface ResponseHandler {
  /** The endpoint chosen and an abort for the exchange (e.g. when the client goes away). */
  onStart(endpoint: Endpoint, abort: (reason?: Error) => void, leg?: Leg): void;
  /** An attempt (first, retry or hedge) goes to `endpoint`, before it has a connection (for logs). */
  onAttempt?(endpoint: Endpoint, leg?: Leg): void;
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean;
  /** `last` is true when this chunk completes a body of known length (onComplete follows). */
  onData(chunk: Buffer, last: boolean): boolean;
  /** The response ended; `trailers` when it had any (HTTP/2: gRPC's status is there). */
  onComplete(trailers?: Trailers): void;
  /** The exchange failed; `error.status` says which HTTP status a proxy should answer with. */
  onError(error: TandemError, leg?: Leg): void;
  /** For upgrade requests: the upstream switched protocols and hands over its socket. */
  onUpgrade?(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void;
}

/** Sends a request on: to the next step, or (the last) to an endpoint. */
export type Dispatch = (request: UpstreamRequest, handler: ResponseHandler) => void;
/** One step of the request path: takes the next dispatch, returns a dispatch (undici's interceptor shape). */
export type Step = (next: Dispatch) => Dispatch;
