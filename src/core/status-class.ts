/**
 * Status classes answers are counted by (per endpoint, per service, per instance): index 0 =
 * 1xx … 4 = 5xx, 5 = no response. The engine counts into arrays in this order and the metrics
 * label them with it.
 */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;
