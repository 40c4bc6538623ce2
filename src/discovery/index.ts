export { EmbeddedRegistry, EMBEDDED_DEFAULTS } from './embedded.js';
export type { EmbeddedRegistryOptions, LeaveCause, RegisterContext, RegistryChange } from './embedded.js';
export { HttpRegistry } from './http.js';
export { EtcdRegistry } from './etcd.js';
export { ETCD_DEFAULTS, etcdOptionsFromUrl } from './etcd-options.js';
export type { EtcdRegistryOptions } from './etcd-options.js';
export { registryFromUrl } from './from-url.js';
export type { HttpRegistryOptions } from './http.js';
export { StaticRegistry } from './static.js';
export type { StaticEndpoint } from './static.js';
export { checkRegistration } from './registration.js';
export type { RegistrationLimits } from './registration.js';
export { INSTANCE_STATES } from './types.js';
export type {
  Instance, InstanceState, KeepAlive, KeepAliveOptions, Lease, LeaseLoss, Registration, Registry, ServiceSnapshot, WatchOptions,
} from './types.js';
