// What the gateway sends (src/gateway/dashboard-feed.ts, dashboard-history.ts,
// dashboard-health.ts): the page's copy of the wire types — the two tsconfig projects share no code.

export interface EndpointView {
  id: string; state: string; rate: number; errorRate: number; p99Ms: number | null;
  latencyEstimateMs: number; inflight: number; weight: number; ejectedUntil?: string;
}
export interface HistoryPoint { t: number; rate: number; errorRate: number; p99Ms: number | null }
export interface Departure { id: string; instance: string; cause: string; time: string }
export interface ServiceView {
  name: string; panic: boolean; rate: number; errorRate: number; p99Ms: number | null;
  active: number; retriesPerSecond: number; budgetExhausted: number; endpoints: EndpointView[];
  point?: HistoryPoint; departed?: Departure[];
}
export interface GatewayView { address: string; self: boolean; ready: boolean | null; holdsAddress: boolean | null; lastSeen: string | null; error?: string }
export interface HealthReason { kind: string; service?: string; text: string }
export interface TimelineEvent { seq: number; time: string; kind: string; service?: string; endpoint?: string; text: string; cause?: string }
export interface CacheView {
  route: string; hits: number; misses: number; stale: number; hitRatio: number | null; entries: number; bytes: number;
  redis?: { hits: number; errors: number; fallbacks: number };
}
export interface Snapshot {
  gateway: {
    version: string; pid: number; uptimeSeconds: number; health: string; inflight: number; listen: string;
    rssBytes: number; rate: number; errorRate: number; reasons?: HealthReason[];
  };
  services: ServiceView[];
  gateways?: GatewayView[];
  caches?: CacheView[];
  timeline: TimelineEvent[];
  sampledAt: string;
}
export interface ServiceHistory { service: string; intervalMs: number; t: number[]; rate: number[]; errorRate: number[]; p99Ms: Array<number | null> }
export interface HistoryMessage { services: ServiceHistory[]; errorRule?: { share: number; samples: number; minRequests: number } }
