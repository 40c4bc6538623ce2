import type { Http2Session } from 'node:http2';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { LinkedSet } from './linked-set.js';

/**
 * node:http2's stream tables, renewed after the collections that could have made them old.
 *
 * node:http2 keeps a session's streams in a Map, and the streams not yet given an id in a Set,
 * in the session's internal state: every stream of the session goes in and comes out again.
 * V8 keeps a Map's entries in a table, which it replaces by a new one as entries come and go;
 * the table replaced still points to the one after it. A table gets old when a full collection
 * finds it in use, or when it stays in use through two scavenges (a session with few streams).
 * From its next replacement on, that old table — garbage, but a scavenge cannot know it —
 * points to the young tables that follow, each holding the streams that were in the Map when
 * it was replaced: nearly every stream of the session, and all each stream holds, survives the
 * scavenges until the next full collection, copied out of the young generation twice and then
 * into the old one (docs/benchmarks.md, "What a long-lived table keeps").
 *
 * A table renewed — the same entries in a new Map of the same class — has no such past: the
 * new table is young, and nothing old points to it but its own Map. So the tables are renewed
 * after collections, from a PerformanceObserver's callback: after a full collection, those of
 * every session tracked; after a scavenge, those of the sessions that began a stream since
 * their last renewal (a table in use is thus never two scavenges old; an idle session's may
 * get old, and then keeps the streams of at most one scavenge's time once it is busy again).
 *
 * The state is node:http2's own, not an API: it is found by its symbol's description, and
 * only a Map and a Set found there are replaced, each by a copy made with its own constructor
 * and checked to hold as many entries; a session that looks otherwise is left as it is, and
 * reported once. Node reads these tables from the state on every use and never across a turn
 * of the event loop, which is where the renewal runs.
 *
 * Only the gateway process installs it (cli/gateway-command.ts); the libraries never do.
 */

/** The sessions tracked: a linked set, for the reason above (core/linked-set.ts). */
const tracked = new LinkedSet<Http2Session>();
/** Sessions that began a stream since their last renewal (each marked under kDirty). */
let dirty: Http2Session[] = [];
const kDirty = Symbol('tandem.streamTables.dirty');
let kState: symbol | undefined;
let observer: PerformanceObserver | undefined;
let unrecognised: ((session: Http2Session) => void) | undefined;
let renewals = 0;

type Marked = Http2Session & { [kDirty]?: boolean };

/** Tracks `session` (until it closes) for the renewal, when the renewal is installed; otherwise nothing. */
export function trackStreamTables(session: Http2Session): void {
  if (observer === undefined) return;
  tracked.add(session);
  session.once('close', () => tracked.delete(session));
}

/** `session` began a stream: its tables are renewed after the next collection (when installed). */
export function streamStarted(session: Http2Session | undefined): void {
  if (observer === undefined || session === undefined || (session as Marked)[kDirty] === true) return;
  (session as Marked)[kDirty] = true;
  dirty.push(session);
}

/**
 * Renews the stream tables: of every session tracked (`all`, after a full collection), or of
 * those that began a stream since their last renewal. Returns how many sessions had theirs
 * renewed.
 */
export function renewStreamTables(all = true): number {
  const marked = dirty;
  dirty = [];
  for (const session of marked) (session as Marked)[kDirty] = false;
  let renewed = 0;
  for (const session of all ? tracked : marked) if (renewSession(session)) renewed++;
  renewals++;
  return renewed;
}

/** How many renewals ran in this process (tests wait on it). */
export function streamTableRenewals(): number {
  return renewals;
}

/**
 * Renews the tables after collections, for the sessions tracked from now on; `onUnrecognised`
 * is called (once) for a session whose state is not what this expects. Returns false where this
 * Node reports no collections to observers (nothing is tracked then).
 */
export function installStreamTableRenewal(onUnrecognised?: (session: Http2Session) => void): boolean {
  if (observer !== undefined) return true;
  unrecognised = onUnrecognised;
  try {
    const watching = new PerformanceObserver((list) => {
      let major = false;
      for (const entry of list.getEntries()) {
        if (((entry as { detail?: unknown }).detail as { kind?: number } | null | undefined)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major = true;
      }
      renewStreamTables(major);
    });
    watching.observe({ entryTypes: ['gc'] });
    observer = watching;
    return true;
  } catch {
    return false;
  }
}

interface StreamState {
  streams: Map<unknown, unknown>;
  pendingStreams: Set<unknown>;
}

function renewSession(session: Http2Session): boolean {
  if (session.destroyed) return false;
  const state = stateOf(session);
  const streams = state === undefined ? undefined : copyOf(state.streams);
  const pending = state === undefined ? undefined : copyOf(state.pendingStreams);
  if (state === undefined || streams === undefined || pending === undefined) {
    if (unrecognised !== undefined) {
      const report = unrecognised;
      unrecognised = undefined;
      report(session);
    }
    return false;
  }
  state.streams = streams;
  state.pendingStreams = pending;
  return true;
}

function stateOf(session: Http2Session): StreamState | undefined {
  const own = session as unknown as Record<symbol, unknown>;
  if (kState === undefined || !(kState in own)) kState = Object.getOwnPropertySymbols(session).find((s) => s.description === 'state');
  if (kState === undefined) return undefined;
  const state = own[kState] as Partial<StreamState> | null | undefined;
  if (typeof state !== 'object' || state === null) return undefined;
  if (!isA(state.streams, '[object Map]') || !isA(state.pendingStreams, '[object Set]')) return undefined;
  return state as StreamState;
}

function isA(value: unknown, tag: string): boolean {
  return typeof value === 'object' && value !== null && Object.prototype.toString.call(value) === tag;
}

/** The same entries in a new table of the same class, or undefined if the copy does not hold them all. */
function copyOf<T extends Map<unknown, unknown> | Set<unknown>>(table: T): T | undefined {
  const Table = table.constructor as (new (entries: Iterable<unknown>) => T) | undefined;
  if (typeof Table !== 'function') return undefined;
  try {
    const copy = new Table(table as Iterable<unknown>);
    return copy.size === table.size ? copy : undefined;
  } catch {
    return undefined;
  }
}
