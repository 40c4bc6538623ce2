/**
 * tandem's public surface. Subpath entries (`tandem-ha/config`, `tandem-ha/upstream`,
 * `tandem-ha/gateway`, `tandem-ha/discovery`, `tandem-ha/node`) expose each part on its own; everything not exported here is internal.
 */
export { VERSION } from './version.js';
export { ERROR_CATALOG, ERROR_STATUS, TandemError, isTandemError } from './core/errors.js';
export type { ErrorCode, TandemErrorOptions } from './core/errors.js';
export { Gateway } from './gateway/gateway.js';
export { loadConfigFile, validateConfig, defineConfig, parseConfigText, ConfigError, DEFAULTS, CONFIG_SCHEMA } from './config/index.js';
export type { GatewayConfig, GatewayConfigInput, ServiceConfig, ServiceConfigInput, RouteConfig, ConfigProblem } from './config/index.js';
export { Upstream, createBalancer, BALANCER_KINDS } from './upstream/index.js';
export type { BalancerKind, ResponseHandler, UpstreamRequest } from './upstream/index.js';
export { createLogger } from './observe/log.js';
export { EmbeddedRegistry, EtcdRegistry, HttpRegistry, StaticRegistry } from './discovery/index.js';
export type { Registry, Registration, Instance, InstanceState, Lease, ServiceSnapshot } from './discovery/index.js';
export { serve } from './node/index.js';
export type { ServeOptions, ServedInstance } from './node/index.js';
