import type { Http2Session } from 'node:http2';
import { PerformanceObserver, constants } from 'node:perf_hooks';

/**
 * node:http2's stream tables, renewed after each full collection.
 *
 * node:http2 keeps a session's streams in a Map, and the streams not yet given an id in a Set,
 * in the session's internal state: every stream of the session goes in and comes out again.
 * V8 keeps a Map's entries in a table, which it replaces by a new one as entries come and go;
 * the table replaced still points to the one after it. A full collection leaves the table in
 * use in the old generation. From its first replacement on, that old table — garbage, but a
 * scavenge cannot know it — points to the young tables that follow, each holding the streams
 * that were in the Map when it was replaced: nearly every stream of a busy session, and all
 * each stream holds, survives the scavenges until the next full collection, copied out of the
 * young generation twice and then into the old one (measured in docs/benchmarks.md, "What a
 * long-lived table keeps").
 *
 * A table renewed — the same entries in a new Map of the same class — has no such past: the
 * new table is young, and nothing old points to it but its own Map. So after each full
 * collection the tables of every session tracked here are renewed, once. The state is
 * node:http2's own, not an API: it is found by its symbol's description, and only a Map and a
 * Set found there are replaced, each by a copy made with its own constructor and checked to
 * hold as many entries; a session that looks otherwise is left as it is. Node reads these
 * tables from the state on every use and never across a turn of the event loop, which is
 * where the renewal runs (a PerformanceObserver's callback).
 *
 * Only the gateway process installs it (cli/gateway-command.ts); the libraries never do.
 */

let tracked = new Set<Http2Session>();
let observer: PerformanceObserver | undefined;
let renewals = 0;

/** Tracks `session` (until it closes) for the renewal, when the renewal is installed; otherwise nothing. */
export function trackStreamTables(session: Http2Session): void {
  if (observer === undefined) return;
  tracked.add(session);
  session.once('close', () => tracked.delete(session));
}

/**
 * Renews the stream tables of every session tracked; returns how many sessions had theirs
 * renewed. The set of sessions tracked is renewed too: it lives as long as the process and
 * sessions come and go through it.
 */
export function renewStreamTables(): number {
  let renewed = 0;
  for (const session of tracked) if (renewSession(session)) renewed++;
  tracked = new Set(tracked);
  renewals++;
  return renewed;
}

/** How many renewals ran in this process (tests wait on it). */
export function streamTableRenewals(): number {
  return renewals;
}

/**
 * Renews the tables after each full collection, for the sessions tracked from now on. Returns
 * false where this Node reports no collections to observers (nothing is tracked then).
 */
export function installStreamTableRenewal(): boolean {
  if (observer !== undefined) return true;
  try {
    const watching = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        if (((entry as { detail?: unknown }).detail as { kind?: number } | null | undefined)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
          renewStreamTables();
          return;
        }
      }
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
  if (state === undefined) return false;
  const streams = copyOf(state.streams);
  const pending = copyOf(state.pendingStreams);
  if (streams === undefined || pending === undefined) return false;
  state.streams = streams;
  state.pendingStreams = pending;
  return true;
}

function stateOf(session: Http2Session): StreamState | undefined {
  const key = Object.getOwnPropertySymbols(session).find((s) => s.description === 'state');
  if (key === undefined) return undefined;
  const state = (session as unknown as Record<symbol, unknown>)[key] as Partial<StreamState> | null | undefined;
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
