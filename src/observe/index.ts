export { METRICS, METRIC_SPECS, metricsRegistry, eventCounters, NODE_STATES } from './metrics.js';
export type { MetricSpec, MetricEmitter, EventCounters } from './metrics.js';
export { LatencyHistogram, LATENCY_BUCKETS_SECONDS } from './histogram.js';
export { createLogger } from './log.js';
export type { Logger } from './log.js';
export {
  TRACEPARENT, TRACESTATE, parseTraceparent, formatTraceparent, currentTrace, runWithTrace, traceHeaders, continueTrace, childContext, tracingReady,
} from './trace.js';
export type { TraceContext } from './trace.js';
