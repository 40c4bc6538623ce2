export { createClient, ServiceClient, DEFAULT_CLIENT_OPTIONS } from './client.js';
export type { ClientOptions, ClientRequest, ClientResponse } from './client.js';
export type { Step, Dispatch } from '../upstream/upstream.js';
export { currentDeadline, runWithDeadline, deadlineOf, TIMEOUT_HEADER } from '../core/deadline.js';
export { FAILED_DEPENDENCY_HEADER } from '../core/dependency.js';
export { cacheStep, ResponseCache, RedisLevel, STALE_REASONS } from '../cache/index.js';
export type { CacheSettingsInput, CacheStats, RedisLevelOptions, ResponseCacheOptions, StaleEvent, StaleReason } from '../cache/index.js';
export { createGrpcClient, DEFAULT_GRPC_CLIENT_OPTIONS, GrpcUnaryCall, GrpcServerStream, GrpcClientStream, GrpcBidiStream } from './grpc-client.js';
export type {
  GrpcClient, GrpcClientControls, GrpcClientOptions, GrpcCallOptions, GrpcCallback, GrpcMetadataLike,
  GrpcMethodDefinition, GrpcServiceDefinition, GrpcServiceError, GrpcUnaryMethod, GrpcServerStreamMethod,
  GrpcClientStreamMethod, GrpcBidiStreamMethod, GrpcStatusObject,
} from './grpc-client.js';
export { GRPC_STATUS } from './grpc-status.js';
export type { GrpcStatusName } from './grpc-status.js';
