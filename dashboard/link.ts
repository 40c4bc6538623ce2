// The page's stream from the gateway (/admin/stream, server-sent events) and whether it is up.
// EventSource reconnects by itself after a network error; this adds what it lacks: a watchdog
// for a stream that stays open but goes quiet (a frozen gateway, a dead network path), a new
// attempt when EventSource gives up (an HTTP error), and the words for why it is down.
import type { HistoryMessage, Snapshot, TimelineEvent } from './types.js';

/** Snapshots come every second: this long without any message, the stream is taken for dead. */
const QUIET_MS = 5_000;
/** A connection attempt that has not opened after this long is abandoned and tried again. */
const ATTEMPT_MS = 10_000;
/** Wait before a new attempt once EventSource gave up. */
const RETRY_MS = 2_000;

/** Down: since when, the last message before, how many attempts failed since, and why. */
type Down = { up: false; since: number; lastData: number | undefined; attempts: number; why: string };
export type LinkState = { up: true } | Down;

export interface LinkHandlers {
  history(h: HistoryMessage): void;
  snapshot(s: Snapshot): void;
  event(e: TimelineEvent): void;
  /** The stream went down or came back. */
  change(state: LinkState): void;
}

export class Link {
  private source: EventSource | undefined;
  private state: LinkState = { up: false, since: Date.now(), lastData: undefined, attempts: 0, why: 'connecting' };
  private lastData: number | undefined;
  private attemptAt = 0;
  private retry: number | undefined;

  constructor(private readonly url: string, private readonly on: LinkHandlers) {}

  start(): void {
    this.connect();
    window.setInterval(() => this.watch(), 1000);
  }

  get current(): LinkState {
    return this.state;
  }

  private connect(): void {
    this.source?.close();
    window.clearTimeout(this.retry);
    this.attemptAt = Date.now();
    const source = new EventSource(this.url);
    this.source = source;
    source.addEventListener('history', (m) => this.message(() => this.on.history(parse<HistoryMessage>(m))));
    source.addEventListener('snapshot', (m) => this.message(() => this.on.snapshot(parse<Snapshot>(m))));
    source.addEventListener('event', (m) => this.message(() => this.on.event(parse<TimelineEvent>(m))));
    source.addEventListener('error', () => {
      if (source !== this.source) return;
      this.down('the stream broke: the gateway is gone or unreachable');
      // CLOSED: EventSource will not try again by itself (an HTTP error, such as a 401).
      if (source.readyState === EventSource.CLOSED) void this.explainAndRetry();
    });
  }

  private message(handle: () => void): void {
    this.lastData = Date.now();
    if (!this.state.up) {
      this.state = { up: true };
      this.on.change(this.state);
    }
    handle();
  }

  private down(why: string, attempt = true): void {
    const was = this.state;
    const next: Down = was.up ? { up: false, since: Date.now(), lastData: this.lastData, attempts: 0, why } : { ...was, why };
    if (attempt) next.attempts++;
    this.state = next;
    this.on.change(next);
  }

  /** Once a second: a quiet stream or a hanging attempt is closed and tried again. */
  private watch(): void {
    const now = Date.now();
    if (this.state.up && this.lastData !== undefined && now - this.lastData > QUIET_MS) {
      this.down(`no data for ${QUIET_MS / 1000} s: the gateway may be frozen or the network down`);
      this.connect();
    } else if (!this.state.up && this.source?.readyState === EventSource.CONNECTING && now - this.attemptAt > ATTEMPT_MS) {
      this.down('the gateway does not answer');
      this.connect();
    }
  }

  /** EventSource gave up on an HTTP answer: find out which (the secret?) and try again later. */
  private async explainAndRetry(): Promise<void> {
    try {
      const res = await fetch('/admin/dashboard', { cache: 'no-store' });
      if (res.status === 401) this.down('the gateway refused this page\'s secret: open the dashboard link (…/?token=…) again', false);
      else this.down(`the gateway answered ${res.status}`, false);
    } catch {
      this.down('the gateway is gone or unreachable', false);
    }
    this.retry = window.setTimeout(() => this.connect(), RETRY_MS);
  }
}

function parse<T>(m: Event): T {
  return JSON.parse((m as MessageEvent<string>).data) as T;
}
