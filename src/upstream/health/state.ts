import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
import { TandemError } from '../../core/errors.js';

/**
 * The health of one endpoint as a state machine. Every source of evidence — active checks,
 * passive outlier detection, membership — moves it only through the transition methods below,
 * so the rules for combining them live in one place.
 *
 *   probation ──checks/requests pass (healthyThreshold)──▶ healthy
 *   probation ──one failed check──▶ unhealthy
 *   healthy ──failed checks (unhealthyThreshold)──▶ unhealthy
 *   probation, healthy ──eject──▶ ejected ──until passes──▶ probation
 *   ejected ──failed checks (unhealthyThreshold)──▶ unhealthy
 *   unhealthy ──passed checks (healthyThreshold)──▶ probation
 *   any ──drain──▶ draining ──undrain──▶ probation
 *
 * A transition that does not apply in the current state is ignored: evidence arrives late (a
 * check started before an ejection, an ejection timer after a drain) and must not undo a newer
 * decision.
 */

export interface HealthOptions {
  healthyThreshold: number;
  unhealthyThreshold: number;
}

/** The product's thresholds (core/defaults/upstream.ts: rise 2, fall 2). */
export const DEFAULT_HEALTH: Readonly<HealthOptions> = Object.freeze({
  healthyThreshold: UPSTREAM_DEFAULTS.healthCheck.healthyThreshold,
  unhealthyThreshold: UPSTREAM_DEFAULTS.healthCheck.unhealthyThreshold,
});

/** Why an endpoint is on probation: where it came from. */
export type ProbationCause = 'new' | 'ejected' | 'unhealthy' | 'draining';

/**
 * The states, each with its own data. `since` is when the state was entered (Clock time).
 * Objects are immutable: a counter update replaces the object, so a listener may keep `from`.
 */
export type HealthState =
  /** Takes traffic but has not proven itself yet: new, or back from being out. */
  | { readonly kind: 'probation'; readonly since: number; readonly from: ProbationCause; readonly successes: number }
  | { readonly kind: 'healthy'; readonly since: number; readonly checkFailures: number }
  /** Out by passive outlier detection until `until`; `times` = ejections so far (after decay). */
  | { readonly kind: 'ejected'; readonly since: number; readonly until: number; readonly times: number; readonly checkFailures: number }
  /** Out because active checks fail; only passing checks bring it back. */
  | { readonly kind: 'unhealthy'; readonly since: number; readonly checkPasses: number }
  /** Membership says it is leaving: finishes what it has, gets nothing new. */
  | { readonly kind: 'draining'; readonly since: number };

export type HealthStateKind = HealthState['kind'];

export type TransitionReason =
  | 'check-passed'
  | 'check-failed'
  | 'request-succeeded'
  | 'ejected'
  | 'ejection-expired'
  | 'drained'
  | 'undrained';

export interface HealthTransition {
  readonly from: HealthState;
  readonly to: HealthState;
  readonly reason: TransitionReason;
}

export type TransitionListener = (transition: HealthTransition) => void;

/** Anything that carries an EndpointHealth (an Endpoint does); what detectors and filters take. */
export interface WithHealth {
  readonly health: EndpointHealth;
}

/**
 * Holds one endpoint's current state. Each transition method takes the Clock time and returns
 * true when the state kind changed (a transition was reported to listeners), false when it was
 * ignored or only a counter moved.
 */
export class EndpointHealth {
  readonly options: Readonly<HealthOptions>;
  private current: HealthState;
  private listeners: TransitionListener[] = [];

  constructor(options: Partial<HealthOptions> = {}, now = 0) {
    this.options = resolveHealthOptions(options);
    this.current = { kind: 'probation', since: now, from: 'new', successes: 0 };
  }

  get state(): HealthState {
    return this.current;
  }

  /** May take new requests: probation and healthy. */
  get eligible(): boolean {
    const kind = this.current.kind;
    return kind === 'probation' || kind === 'healthy';
  }

  checkPassed(now: number): boolean {
    const s = this.current;
    switch (s.kind) {
      case 'probation':
        return this.countSuccess(s, now, 'check-passed');
      case 'healthy':
        if (s.checkFailures > 0) this.current = { ...s, checkFailures: 0 };
        return false;
      case 'ejected':
        if (s.checkFailures > 0) this.current = { ...s, checkFailures: 0 };
        return false;
      case 'unhealthy': {
        const passes = s.checkPasses + 1;
        if (passes >= this.options.healthyThreshold) {
          return this.move({ kind: 'probation', since: now, from: 'unhealthy', successes: 0 }, 'check-passed');
        }
        this.current = { ...s, checkPasses: passes };
        return false;
      }
      case 'draining':
        return false;
    }
  }

  checkFailed(now: number): boolean {
    const s = this.current;
    switch (s.kind) {
      case 'probation':
        // Unproven and already failing its health endpoint: no benefit of the doubt.
        return this.move({ kind: 'unhealthy', since: now, checkPasses: 0 }, 'check-failed');
      case 'healthy':
      case 'ejected': {
        const failures = s.checkFailures + 1;
        if (failures >= this.options.unhealthyThreshold) {
          // From ejected too: active checks are the stronger evidence, and an unhealthy
          // endpoint returns only through passing checks, not when an ejection timer ends.
          return this.move({ kind: 'unhealthy', since: now, checkPasses: 0 }, 'check-failed');
        }
        this.current = { ...s, checkFailures: failures };
        return false;
      }
      case 'unhealthy':
        if (s.checkPasses > 0) this.current = { ...s, checkPasses: 0 };
        return false;
      case 'draining':
        return false;
    }
  }

  /** A real request succeeded. Only probation cares; cheap everywhere else (hot path). */
  requestSucceeded(now: number): boolean {
    const s = this.current;
    return s.kind === 'probation' ? this.countSuccess(s, now, 'request-succeeded') : false;
  }

  /**
   * Takes an eligible endpoint out until `now + durationMs`. `times` is the ejection count the
   * outlier detector computed (it owns backoff and decay); kept here for snapshots. Ignored when
   * the endpoint is already out or draining.
   */
  eject(now: number, durationMs: number, times: number): boolean {
    if (!this.eligible) return false;
    return this.move({ kind: 'ejected', since: now, until: now + durationMs, times, checkFailures: 0 }, 'ejected');
  }

  /** Ends an ejection whose time is up; early or stale calls are ignored. */
  expireEjection(now: number): boolean {
    const s = this.current;
    if (s.kind !== 'ejected' || now < s.until) return false;
    return this.move({ kind: 'probation', since: now, from: 'ejected', successes: 0 }, 'ejection-expired');
  }

  drain(now: number): boolean {
    if (this.current.kind === 'draining') return false;
    return this.move({ kind: 'draining', since: now }, 'drained');
  }

  /**
   * Membership wants it back. Whatever it was before draining, it has to prove itself again:
   * probation is strict (one failed check or, after outlier detection, one failed request
   * takes it out), so returning an endpoint that was unhealthy costs little.
   */
  undrain(now: number): boolean {
    if (this.current.kind !== 'draining') return false;
    return this.move({ kind: 'probation', since: now, from: 'draining', successes: 0 }, 'undrained');
  }

  /** Reports every change of state kind. Listeners run synchronously, in subscription order. */
  onTransition(listener: TransitionListener): { dispose(): void } {
    // Copy-on-write: a listener that disposes (itself or another) during a report does not
    // disturb the report under way.
    this.listeners = [...this.listeners, listener];
    return {
      dispose: () => {
        this.listeners = this.listeners.filter((l) => l !== listener);
      },
    };
  }

  private countSuccess(s: Extract<HealthState, { kind: 'probation' }>, now: number, reason: TransitionReason): boolean {
    const successes = s.successes + 1;
    if (successes >= this.options.healthyThreshold) {
      return this.move({ kind: 'healthy', since: now, checkFailures: 0 }, reason);
    }
    this.current = { ...s, successes };
    return false;
  }

  private move(to: HealthState, reason: TransitionReason): true {
    const from = this.current;
    this.current = to;
    const listeners = this.listeners;
    if (listeners.length > 0) {
      const transition: HealthTransition = { from, to, reason };
      for (const listener of listeners) listener(transition);
    }
    return true;
  }
}

function resolveHealthOptions(options: Partial<HealthOptions>): Readonly<HealthOptions> {
  const resolved: HealthOptions = {
    healthyThreshold: options.healthyThreshold ?? DEFAULT_HEALTH.healthyThreshold,
    unhealthyThreshold: options.unhealthyThreshold ?? DEFAULT_HEALTH.unhealthyThreshold,
  };
  for (const key of ['healthyThreshold', 'unhealthyThreshold'] as const) {
    const value = resolved[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `health.${key} must be an integer >= 1, got ${value}`);
    }
  }
  return Object.freeze(resolved);
}
