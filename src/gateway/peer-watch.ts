import http from 'node:http';
import { networkInterfaces } from 'node:os';
import { formatHostPort, type HostPort } from '../core/address.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';

/** On /readyz when a virtualAddress is configured: whether this gateway holds it (`true` / `false`). */
export const HOLDS_ADDRESS_HEADER = 'x-tandem-holds-address';

/** One gateway of the pair (or more), as /admin/cluster (`gateways`) and the dashboard show it. */
export interface GatewayView {
  /** Its admin listener, `host:port`. */
  address: string;
  /** This gateway (listed first), rather than a peer. */
  self: boolean;
  /** Its /readyz answered 200; false for a 503 or no answer; null before the first poll. */
  ready: boolean | null;
  /** Whether it holds the virtual address; null when unknown (none configured, a peer that does not say, or no answer). */
  holdsAddress: boolean | null;
  /** ISO time of its last answer (for this gateway: now); null when it never answered. */
  lastSeen: string | null;
  /** Why the last poll got no answer (a refused connection, none within the timeout). */
  error?: string;
}

export interface PeerWatchOptions {
  /** This gateway's admin address and readiness, read at every poll. */
  self: () => { address: string; ready: boolean };
  peers: readonly HostPort[];
  virtualAddress: string | undefined;
  /** Time between two polls of each peer (ms). Default 1 s. */
  interval?: number;
  /** A peer's /readyz unanswered this long is "not answering" (ms). Default: the interval. */
  timeout?: number;
  clock?: Clock;
  /** A gateway's readiness, address holding or reachability changed (not called for lastSeen alone). */
  onChange?: (now: GatewayView, before: GatewayView) => void;
  /** After every poll of a peer, answered or not, changed or not. */
  onPoll?: (view: GatewayView) => void;
  /** Addresses of this host's interfaces; os.networkInterfaces() by default. */
  localAddresses?: () => Iterable<string>;
}

interface Peer {
  readonly at: HostPort;
  view: GatewayView;
  asking: boolean;
}

const DEFAULT_INTERVAL = 1000;

/**
 * Knows the other gateways of a pair: asks each peer's /readyz once per interval (an open path,
 * so no secret travels; one kept-alive connection per peer, and no new request while the last
 * is unanswered, so a frozen peer costs one pending request, not a pile), and whether this
 * gateway holds the virtual address (its interfaces, checked once per interval: /readyz, asked
 * by keepalived and load balancers many times a second, reads the cached answer).
 */
export class PeerWatch {
  private peers = new Map<string, Peer>();
  private virtualAddress: string | undefined;
  private holds: boolean | null = null;
  /** The first check of this gateway's interfaces is no change. */
  private started = false;
  private timer: TimerHandle | undefined;
  private closed = false;
  private readonly clock: Clock;
  private readonly interval: number;
  private readonly timeout: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  constructor(private readonly options: PeerWatchOptions) {
    this.clock = options.clock ?? realClock;
    this.interval = options.interval ?? DEFAULT_INTERVAL;
    this.timeout = options.timeout ?? this.interval;
    this.configure(options.peers, options.virtualAddress);
  }

  /** New peers and address (a reload): a peer still listed keeps what is known of it. */
  configure(peers: readonly HostPort[], virtualAddress: string | undefined): void {
    const next = new Map<string, Peer>();
    for (const at of peers) {
      const address = formatHostPort(at.host, at.port);
      next.set(address, this.peers.get(address) ?? { at, view: { address, self: false, ready: null, holdsAddress: null, lastSeen: null }, asking: false });
    }
    this.peers = next;
    if (virtualAddress !== this.virtualAddress) {
      this.virtualAddress = virtualAddress;
      if (this.timer !== undefined) this.checkSelf();
    }
  }

  /** Polls now and then every interval; nothing to do for a gateway alone without a virtual address. */
  start(): void {
    if (this.closed || this.timer !== undefined) return;
    this.tick();
  }

  /** Whether this gateway holds the virtual address, as of the last check (null: none configured, or not checked yet). */
  holdsAddress(): boolean | null {
    return this.holds;
  }

  /** This gateway first, then the peers in the order configured. */
  views(): GatewayView[] {
    const self = this.options.self();
    const mine: GatewayView = { address: self.address, self: true, ready: self.ready, holdsAddress: this.holds, lastSeen: new Date().toISOString() };
    return [mine, ...[...this.peers.values()].map((p) => ({ ...p.view }))];
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.agent.destroy();
  }

  private tick(): void {
    if (this.closed) return;
    this.checkSelf();
    for (const peer of this.peers.values()) if (!peer.asking) this.ask(peer);
    this.timer = this.clock.setTimeout(() => this.tick(), this.interval);
  }

  /**
   * Whether this gateway's interfaces have the virtual address; taking or losing it is reported
   * like a peer's change (its own readiness is on the timeline already: start, drain).
   */
  private checkSelf(): void {
    const vip = this.virtualAddress;
    const before = this.holds;
    this.holds = vip === undefined ? null : [...(this.options.localAddresses ?? interfaceAddresses)()].includes(vip);
    if (this.started && this.holds !== null && before !== this.holds) {
      const self = this.options.self();
      const view: GatewayView = { address: self.address, self: true, ready: self.ready, holdsAddress: this.holds, lastSeen: null };
      this.options.onChange?.(view, { ...view, holdsAddress: before });
    }
    this.started = true;
  }

  private ask(peer: Peer): void {
    peer.asking = true;
    let settled = false;
    const settle = (next: Omit<GatewayView, 'address' | 'self'>) => {
      if (settled) return;
      settled = true;
      this.clock.clearTimeout(timer);
      peer.asking = false;
      // A peer dropped by a reload meanwhile: its answer goes nowhere.
      if (this.closed || this.peers.get(peer.view.address) !== peer) return;
      const before = peer.view;
      peer.view = { address: before.address, self: false, ...next };
      if (changed(before, peer.view)) this.options.onChange?.(peer.view, before);
      this.options.onPoll?.(peer.view);
    };
    const unanswered = (error: string) => settle({ ready: false, holdsAddress: null, lastSeen: peer.view.lastSeen, error });
    const req = http.get({ host: peer.at.host, port: peer.at.port, path: '/readyz', agent: this.agent, headers: { host: formatHostPort(peer.at.host, peer.at.port) } }, (res) => {
      res.resume();
      const said = res.headers[HOLDS_ADDRESS_HEADER];
      settle({ ready: res.statusCode === 200, holdsAddress: said === 'true' ? true : said === 'false' ? false : null, lastSeen: new Date().toISOString() });
    });
    const timer = this.clock.setTimeout(() => {
      unanswered(`no answer within ${this.timeout} ms`);
      req.destroy();
    }, this.timeout);
    req.on('error', (err: NodeJS.ErrnoException) => unanswered(err.code ?? err.message));
  }
}

function changed(a: GatewayView, b: GatewayView): boolean {
  return a.ready !== b.ready || a.holdsAddress !== b.holdsAddress || (a.error === undefined) !== (b.error === undefined);
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/** A change as the timeline and the log say it. */
export function describeChange(now: GatewayView, before: GatewayView, virtualAddress: string | undefined): string {
  const who = now.self ? 'this gateway' : `gateway ${now.address}`;
  const parts: string[] = [];
  if (now.ready !== before.ready || (now.error === undefined) !== (before.error === undefined)) {
    parts.push(now.error !== undefined ? `not answering (${now.error})` : now.ready ? 'ready' : 'not ready');
  }
  if (now.holdsAddress !== before.holdsAddress && now.holdsAddress !== null) {
    parts.push(`${now.holdsAddress ? 'holds' : 'does not hold'} the address${virtualAddress === undefined ? '' : ` ${virtualAddress}`}`);
  }
  return `${who}: ${parts.join(', ') || 'changed'}`;
}
