import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';

/** Every default of serve() (ServeOptions says what each does), written once. */
export const NODE_DEFAULTS = Object.freeze({
  /** A beat is a byte on an open connection: cheap; a crash is found by that connection closing, not a missed beat. */
  heartbeatInterval: 1000,
  /** The lease TTL asked for: discovery's (10 s), so an SDK lease and one the registry gives by default last as long. */
  ttl: DISCOVERY_DEFAULTS.ttl,
  /**
   * A gateway that leaves a beat unanswered this long is taken for frozen or gone: noticed within
   * heartbeatInterval + registryTimeout (2.5 s), where TCP alone would take minutes. Long enough
   * for a gateway's event loop to be busy for a while: a false alarm costs one reconnect, not
   * the membership.
   */
  registryTimeout: 1500,
  drainTimeout: 30_000,
  drainQuietPeriod: 250,
});
