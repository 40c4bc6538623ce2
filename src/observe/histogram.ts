// The histogram is shared vocabulary (the upstream engine fills it, metrics export it): it lives in core.
export { LatencyHistogram, LATENCY_BUCKETS_SECONDS } from '../core/histogram.js';
