import type { ServiceConfig } from '../config/types.js';
import type { UpstreamSettings } from '../upstream/settings.js';

/**
 * A service as the config file describes it → what the upstream engine needs, in the engine's
 * units (config percentages become shares of 1). The gateway and the service client both map
 * through here, so the two faces of the engine read the file the same way. Gateway-only
 * settings (`hash`: where the key comes from) stay behind.
 */
export function upstreamSettingsOf(c: ServiceConfig): UpstreamSettings {
  return {
    name: c.name,
    endpoints: c.endpoints,
    balancer: c.balancer,
    timeoutMs: c.timeout,
    concurrencyLimit: c.concurrencyLimit,
    protocol: c.protocol,
    grpc: c.protocol === 'grpc' ? { idempotentMethods: c.grpc.idempotentMethods, healthService: c.grpc.healthService } : undefined,
    pool: {
      ...(c.protocol === 'grpc' ? { protocol: 'grpc' as const } : {}),
      maxConnections: c.maxConnections,
      connectTimeoutMs: c.connectTimeout,
      keepAliveTimeoutMs: c.keepAliveTimeout,
      maxResponseHeaderSize: c.maxResponseHeaderSize,
    },
    healthCheck: c.healthCheck === false ? false : {
      path: c.healthCheck.path,
      intervalMs: c.healthCheck.interval,
      timeoutMs: c.healthCheck.timeout,
      healthyThreshold: c.healthCheck.healthyThreshold,
      unhealthyThreshold: c.healthCheck.unhealthyThreshold,
    },
    outlier: {
      consecutiveFailures: c.outlier.consecutiveFailures,
      baseEjectionMs: c.outlier.baseEjectionTime,
      maxEjectionMs: c.outlier.maxEjectionTime,
      maxEjectedShare: c.outlier.maxEjectedShare,
    },
    panicThreshold: c.panicThreshold,
    retry: c.retry === false ? false : {
      attempts: c.retry.attempts,
      perTryTimeoutMs: c.retry.perTryTimeout,
      bodyLimit: c.retry.bodyLimit,
      budget: { percent: c.retry.budget.percent / 100, minPerSecond: c.retry.budget.minPerSecond },
    },
    hedge: c.hedge === false ? false : { percentile: c.hedge.percentile / 100, minDelayMs: c.hedge.minDelay, methods: c.hedge.methods },
  };
}
