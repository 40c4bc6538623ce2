import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';

/** Every default of createClient()'s options (ClientOptions says what each does), written once. */
export const CLIENT_DEFAULTS = Object.freeze({
  /** A vanished, undrained instance is held as long as its lease would have lasted. */
  holdRemoved: DISCOVERY_DEFAULTS.ttl,
  membershipTimeout: 5_000,
});

/** Every default of createGrpcClient()'s own options (GrpcClientOptions says what each does). */
export const GRPC_CLIENT_DEFAULTS = Object.freeze({
  /** gRPC's own per-call retry buffer (grpc.per_rpc_retry_buffer_size). */
  retryBuffer: 256 * 1024,
});
