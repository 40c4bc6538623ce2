export { cacheStep, type CacheChoice } from './cache-step.js';
export { ResponseCache, STALE_REASONS, type CacheStats, type ResponseCacheOptions, type StaleEvent, type StaleReason } from './response-cache.js';
export { RedisLevel, REDIS_BREAK_MS, type RedisLevelOptions } from './redis-level.js';
export type { SharedLevel, SharedResponse } from './shared-level.js';
export { cacheSettings, type CacheSettings, type CacheSettingsInput } from './settings.js';
