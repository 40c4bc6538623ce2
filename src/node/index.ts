export { serve, DEFAULT_SERVE_OPTIONS } from './serve.js';
export type { ServeOptions, ServedInstance, ServedState, Check, DrainHook } from './serve.js';
export type { LinkLogger } from './registry-link.js';
export { FAILED_DEPENDENCY_HEADER } from '../core/dependency.js';
export { serveGrpc, DEFAULT_SERVE_GRPC_OPTIONS } from './serve-grpc.js';
export type { ServeGrpcOptions, ServedGrpcInstance, GrpcServerLike } from './serve-grpc.js';
export { HEALTH_SERVICE, SERVING_STATUS } from './grpc-health.js';
