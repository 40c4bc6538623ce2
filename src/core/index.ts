export { ERROR_CATALOG, ERROR_STATUS, TandemError, isTandemError } from './errors.js';
export type { ErrorCode, TandemErrorOptions } from './errors.js';
export { parseDuration, parseSize, formatDuration, formatSize } from './units.js';
export { parseHostPort, formatHostPort, parseEndpointAddress, formatEndpoint, type EndpointAddress } from './address.js';
export type { HostPort } from './address.js';
