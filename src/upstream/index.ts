export { Upstream } from './upstream.js';
export { compose } from './pipeline.js';
export type { Dispatch, Step } from './pipeline.js';
export type { EndpointSnapshot } from './upstream.js';
export { Endpoint, STATUS_CLASSES, EWMA_DECAY_MS, EWMA_INITIAL_MS, PEAK_DECAY_MS, SLOW_START_MS } from './endpoint.js';
export type { PoolSettings, EndpointInit } from './endpoint.js';
export type { UpstreamRequest, ResponseHandler } from './types.js';
export { classifyUpstreamError } from './classify.js';
export * from './balancer/index.js';
