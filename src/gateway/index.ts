export { Gateway } from './gateway.js';
export { Router, prefixMatches, stripPrefix } from './router.js';
export type { Route } from './router.js';
export { handleRegistryApi, REGISTRY_API_PREFIX } from './registry-api.js';
