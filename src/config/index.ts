export { DEFAULTS } from './defaults.js';
export { CONFIG_SCHEMA } from './schema.js';
export { defineConfig } from './define.js';
export { validateConfig, parseCidr, trustedProxyList } from './validate.js';
export { loadConfigFile, locateProblems, parseConfigText } from './load.js';
export { ConfigError, formatProblem } from './problems.js';
export type { ConfigProblem } from './problems.js';
export type * from './types.js';
