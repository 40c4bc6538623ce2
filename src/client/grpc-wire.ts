import { grpcStatusName } from './grpc-status.js';

/**
 * What every kind of gRPC call of tandem/client shares on the wire: the grpc-js shapes it
 * declares (tandem's types do not import grpc-js's), message framing, metadata, errors.
 */

/**
 * One method of a grpc-js service definition — what `@grpc/proto-loader` and grpc-tools make —
 * as this client uses it (declared here: tandem's types do not import grpc-js's).
 */
export interface GrpcMethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: never): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
  originalName?: string;
  /** The method's options from the .proto (proto-loader): `idempotency_level` is read. */
  options?: { idempotency_level?: unknown };
}

/** A grpc-js service definition (`Constructor.service`), by method name. */
export type GrpcServiceDefinition = Readonly<Record<string, GrpcMethodDefinition>>;

/** grpc-js's `Metadata`, as far as this client uses it. */
export interface GrpcMetadataLike {
  toHttp2Headers(): Record<string, string | string[] | number | undefined>;
}

/** grpc-js's `ServiceError`: an Error with the call's status. */
export interface GrpcServiceError extends Error {
  code: number;
  details: string;
  /** grpc-js `Metadata`: the response's headers and trailers. */
  metadata: unknown;
}


/** The parts of the grpc-js module the calls use (declared: tandem's declarations import nothing of grpc-js). */
export interface GrpcModule {
  Metadata: {
    new (): unknown;
    fromHttp2Headers(headers: Record<string, string | string[]>): unknown;
  };
}

/** Headers of the request the caller may not set: the transport's own. */
const RESERVED = new Set(['content-type', 'te', 'grpc-timeout', 'content-length', 'user-agent']);

/** A gRPC message frame: uncompressed flag, length (big-endian), bytes. */
export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

export function headersOf(metadata: GrpcMetadataLike | undefined): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  if (metadata === undefined) return out;
  for (const [name, value] of Object.entries(metadata.toHttp2Headers())) {
    if (value === undefined || RESERVED.has(name)) continue;
    out[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

/** The response's headers and trailers as grpc-js Metadata, without the protocol's own. */
export function metadataOf(grpc: GrpcModule, headers: Record<string, string | string[]>): unknown {
  const own: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'grpc-status' || name === 'grpc-message' || name === 'content-type' || name === 'content-length' || name.startsWith('grpc-')) continue;
    own[name] = value;
  }
  return grpc.Metadata.fromHttp2Headers(own);
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md). */
export function detailsOf(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(', ') : value ?? '';
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The one error class of src/ whose `code` is not a TANDEM_ERR_ code: a gRPC caller expects
 * grpc-js's shape, a numeric status (the tandem code, when there is one, is in `details`).
 */
export class GrpcCallError extends Error implements GrpcServiceError {
  constructor(readonly code: number, readonly details: string, readonly metadata: unknown, cause?: unknown) {
    super(`${code} ${grpcStatusName(code)}: ${details}`, cause === undefined ? undefined : { cause });
    this.name = 'GrpcCallError';
  }
}

export function serviceError(grpc: GrpcModule, code: number, details: string, metadata?: unknown, cause?: unknown): GrpcServiceError {
  return new GrpcCallError(code, details, metadata ?? new grpc.Metadata(), cause);
}

