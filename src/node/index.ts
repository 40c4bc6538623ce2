export { serve, DEFAULT_SERVE_OPTIONS } from './serve.js';
export type { ServeOptions, ServedInstance, ServedState, Check, DrainHook } from './serve.js';
export type { LinkLogger } from './registry-link.js';
export { FAILED_DEPENDENCY_HEADER } from '../core/dependency.js';
