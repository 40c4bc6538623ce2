/**
 * The gateway's health as the dashboard's badge, /admin/dashboard and `tandem status` show it:
 * one word and the reasons behind it.
 *
 * - `draining`: the gateway itself is draining (SIGTERM): it takes no new connection.
 * - `degraded`: a service cannot serve as it should — it has no instance, no eligible one
 *   (every instance unhealthy, ejected or draining), it is in panic (too few eligible: traffic
 *   spread over instances that are failing), or at least ERROR_RULE.share of its requests failed
 *   (5xx or no answer) over the last ERROR_RULE.samples samples with at least
 *   ERROR_RULE.minRequests requests (fewer is too little to judge: 1 failure in 3 is noise).
 * - `ok` otherwise.
 *
 * The page has a fourth word of its own, `disconnected`: its stream from the gateway is down.
 */
export type GatewayHealth = 'ok' | 'degraded' | 'draining';

export type HealthReasonKind = 'no-instance' | 'no-eligible' | 'panic' | 'errors' | 'draining';

export interface HealthReason {
  kind: HealthReasonKind;
  /** The service it is about; absent for the gateway's own (draining). */
  service?: string;
  /** Why, in words, without the service's name. */
  text: string;
}

/** When a service's failures make it degraded: the share, over how many samples (seconds), from how many requests. */
export const ERROR_RULE = Object.freeze({ share: 0.05, samples: 10, minRequests: 20 });

/** What one service's health is judged from. */
export interface ServiceFacts {
  name: string;
  /** Members by health state (draining ones included). */
  states: ReadonlyMap<string, number>;
  /** Members that may take a new request (probation, healthy). */
  eligible: number;
  panic: boolean;
  /** Requests finished and those that failed over the last ERROR_RULE.samples samples. */
  recent: { count: number; errors: number };
}

export function serviceReasons(f: ServiceFacts): HealthReason[] {
  const reasons: HealthReason[] = [];
  const reason = (kind: HealthReasonKind, text: string) => reasons.push({ kind, service: f.name, text });
  let members = 0;
  for (const n of f.states.values()) members += n;
  if (members === 0) reason('no-instance', 'no instance: every request gets 503');
  else if (f.eligible === 0) reason('no-eligible', `no eligible instance (${[...f.states].sort().map(([state, n]) => `${n} ${state}`).join(', ')})`);
  if (f.panic) {
    reason('panic', f.eligible === 0 ? 'in panic: traffic sent to instances out of rotation' : `in panic: ${f.eligible} of ${members - (f.states.get('draining') ?? 0)} instances eligible, traffic spread over the ejected too`);
  }
  const { count, errors } = f.recent;
  if (count >= ERROR_RULE.minRequests && errors / count >= ERROR_RULE.share) {
    reason('errors', `${percent(errors / count)} of ${count} requests failed (5xx or no answer) in the last ${ERROR_RULE.samples} s`);
  }
  return reasons;
}

/** The one word: draining before degraded (a draining gateway is going away whatever its services do). */
export function gatewayHealth(draining: boolean, reasons: readonly HealthReason[]): GatewayHealth {
  if (draining) return 'draining';
  return reasons.length > 0 ? 'degraded' : 'ok';
}

/** The gateway's own reason while it drains. */
export function drainingReason(inflight: number): HealthReason {
  return { kind: 'draining', text: `the gateway is draining: no new connections, ${inflight} ${inflight === 1 ? 'request' : 'requests'} in flight` };
}

function percent(share: number): string {
  return `${(share * 100).toFixed(share < 0.1 ? 1 : 0)} %`;
}
