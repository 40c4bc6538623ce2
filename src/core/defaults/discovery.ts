/**
 * Every default of discovery/ (leases, the embedded registry's limits, the HTTP registry
 * client), written once. In core because the config (the gateway's `registry` section), the
 * node SDK and the service client read it too.
 */
export const DISCOVERY_DEFAULTS = Object.freeze({
  /**
   * Lease time to live: what the SDK asks for, and what the embedded registry gives an
   * instance that asks for none. Long enough that an event loop busy for several seconds does
   * not look like a crash (Moleculer #891); a crashed process is noticed sooner anyway, when
   * its keep-alive connection closes. The service client holds a vanished instance as long.
   */
  ttl: 10_000,
  /** The shortest and longest lease a registration may ask for. */
  minTtl: 1_000,
  maxTtl: 300_000,
  /** JSON size of one instance's metadata. */
  maxMetadataSize: 4096,
  /** Instances in all (memory bound: ~1 KiB each). */
  maxInstances: 50_000,
  /** Instances registered from one IP address. */
  maxInstancesPerPeer: 1_000,
  /** HttpRegistry: longest wait for one request's answer. */
  requestTimeout: 5_000,
  /** The etcd registry (discovery/etcd.ts; docs/registry.md). */
  etcd: Object.freeze({
    /** Keys are `<prefix>/services/<service>/<id>`. */
    prefix: '/tandem',
    /**
     * Longest wait for one member's answer before the next member is asked: a frozen or
     * partitioned member costs this much once, then requests go elsewhere. Well above an etcd
     * write's usual few milliseconds, below the lease TTL so a keep-alive survives a bad member.
     */
    requestTimeout: 2_000,
    /** How often a watching process checks that the member serving its watches answers and has a leader. */
    checkInterval: 2_000,
  }),
});
