export { Gateway } from './gateway.js';
export { Router, prefixMatches, stripPrefix } from './router.js';
export type { Route } from './router.js';
