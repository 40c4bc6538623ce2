import type { Socket } from 'node:net';
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { Client, type Dispatcher, type buildConnector } from 'undici';
import { sniOf } from './tls.js';

/**
 * Streams one HTTP/2 connection carries at once: undici's own assumption of the peer's limit
 * until the peer's SETTINGS say otherwise.
 */
const H2_STREAMS = 100;

/**
 * The connection one pooled client holds now, seen from the exchanges it carries: enough to tell,
 * when an exchange fails, whether its connection had served an earlier exchange (it was reused
 * from the pool) and whether a single response byte came back since this exchange began.
 * undici exposes neither, so each client of an endpoint's pool records them here. Costs one
 * object per client, and two field reads and writes per exchange.
 */
export class ConnectionLedger {
  socket: Socket | undefined = undefined;
  /** Exchanges started on `socket` so far. */
  exchanges = 0;
  /** When the endpoint's FIN was read, the connection had already been reset by it (see peerGone). */
  resetAtEnd = false;
  /**
   * The connection speaks HTTP/2 (agreed by ALPN): its exchanges share it, so its bytes read
   * say nothing about one of them, and nothing is proven from them (startExchange).
   */
  multiplexed = false;
  /** The exchange whose stream undici opens next on this HTTP/2 connection (expectStream). */
  private awaiting: StreamAware | undefined = undefined;
  /** The HTTP/2 session on `socket` whose streams and GOAWAY are watched (watch). */
  private watched: ClientHttp2Session | undefined = undefined;

  /**
   * A new connection replaced the previous one. Over TLS the same holds: `bytesRead` of a TLS
   * socket counts the decrypted bytes of the responses (test/upstream-tls.test.ts resends a POST
   * reset unread on a reused TLS connection and not one read, then closed), and its handle
   * answers getpeername (0 while the peer is there, also after its FIN alone: measured).
   */
  connected(socket: Socket): void {
    this.socket = socket;
    this.exchanges = 0;
    this.resetAtEnd = false;
    this.multiplexed = (socket as Socket & { alpnProtocol?: string | false }).alpnProtocol === 'h2';
    // Before undici's own 'end' listener (added once the connector calls back), which destroys
    // the socket and with it what the kernel knows.
    socket.once('end', () => {
      if (this.socket === socket) this.resetAtEnd = peerGone(socket);
    });
  }

  /**
   * An exchange begins on this HTTP/2 connection: undici opens its stream right after telling it
   * (synchronously, in the same call), so the next stream the session opens is its.
   */
  expectStream(exchange: StreamAware): void {
    if (this.sessionOf() !== undefined) this.awaiting = exchange;
  }

  /**
   * The HTTP/2 session undici made on the current socket, watched once: each stream it opens is
   * handed to the exchange awaiting it, and its GOAWAY's last stream id is noted (before undici's
   * own listener fails the exchanges in flight). undici keeps the session on the socket under a
   * symbol of its own; when it is not found (another undici), nothing is watched, and a GOAWAY
   * proves nothing — the safe side.
   */
  private sessionOf(): ClientHttp2Session | undefined {
    const socket = this.socket as (Socket & Record<symbol, unknown>) | undefined;
    if (socket === undefined) return undefined;
    if (this.watched !== undefined && socket[sessionKey] === this.watched) return this.watched;
    const key = Object.getOwnPropertySymbols(socket).find((k) => k.description === 'http2Session');
    const session = key === undefined ? undefined : socket[key] as ClientHttp2Session | undefined;
    if (session === undefined || typeof session.request !== 'function') return undefined;
    sessionKey = key!;
    this.watch(session);
    return session;
  }

  private watch(session: ClientHttp2Session): void {
    this.watched = session;
    const request = session.request;
    const handOver = (stream: ClientHttp2Stream): void => {
      const exchange = this.awaiting;
      this.awaiting = undefined;
      if (exchange !== undefined) exchange.stream = { stream, session };
    };
    session.request = function (this: ClientHttp2Session, ...args: Parameters<ClientHttp2Session['request']>): ClientHttp2Stream {
      const stream = request.apply(this, args);
      handOver(stream);
      return stream;
    };
    session.prependListener('goaway', (_code: number, lastStreamId: number) => { lastProcessed.set(session, lastStreamId); });
  }
}

/** undici's symbol for the session on a socket, once found. */
let sessionKey: symbol = Symbol('not found yet');

/** An exchange's HTTP/2 stream and the session it belongs to. */
export interface ExchangeStream {
  readonly stream: { readonly id?: number | undefined };
  readonly session: object;
}

/** An exchange that may go out as an HTTP/2 stream: told its stream as undici opens it. */
export interface StreamAware {
  stream: ExchangeStream | undefined;
}

/** Session → the last stream id its endpoint's GOAWAY said it may have processed. */
const lastProcessed = new WeakMap<object, number>();

/**
 * True when the endpoint's GOAWAY said it would not process this exchange's stream: the stream's
 * id is above the GOAWAY's last stream id, or it never got one (RFC 9113 §6.8: such streams were
 * not processed and may be retried). undici 7 fails every stream in flight on a GOAWAY alike
 * (classify.ts), so this is where the two kinds are told apart.
 */
export function refusedByGoaway(exchange: ExchangeStream | undefined): boolean {
  if (exchange === undefined) return false;
  const last = lastProcessed.get(exchange.session);
  if (last === undefined) return false;
  const id = exchange.stream.id;
  return id === undefined || id > last;
}

/**
 * The endpoint's FIN arrived and, by then, the kernel had also taken a reset from it: the
 * endpoint had closed the socket before our request reached it (a peer that closes first and
 * then receives data answers with a reset). A peer that read the request and then closed sent
 * a FIN only: the connection is still half-open (CLOSE_WAIT) and has a peer. Node offers no
 * public way to ask; `getpeername` on the handle fails with ENOTCONN once the connection is
 * reset. A TLS socket's handle has it too; where a handle lacks it, nothing is proven: false.
 */
function peerGone(socket: Socket): boolean {
  const handle = (socket as unknown as { _handle?: { getpeername?: (out: object) => number } })._handle;
  if (handle?.getpeername === undefined) return false;
  return handle.getpeername({}) !== 0;
}

/** A handler that wants to know the connection it goes out on (see Attempt). */
export interface LedgerAware {
  connection: ConnectionLedger | undefined;
}

/**
 * Where an exchange starts on `ledger`'s connection (called just before undici writes it): the
 * connection's bytes read so far when it had carried an exchange before, else -1 (a fresh
 * connection, or unknown).
 */
export function startExchange(ledger: ConnectionLedger | undefined, exchange?: StreamAware): number {
  if (ledger === undefined || ledger.socket === undefined) return -1;
  if (ledger.multiplexed) {
    if (exchange !== undefined) ledger.expectStream(exchange);
    return -1;
  }
  return ledger.exchanges++ > 0 ? ledger.socket.bytesRead : -1;
}

/**
 * True when an exchange that began with `readAtStart` (from startExchange) got not one response
 * byte on a reused connection. With one request per connection at a time (pipelining 1), the
 * earlier responses were read whole before this exchange was written, so any byte read since
 * belongs to this one's response.
 */
export function nothingReadSince(ledger: ConnectionLedger | undefined, readAtStart: number): boolean {
  return readAtStart >= 0 && ledger?.socket !== undefined && ledger.socket.bytesRead === readAtStart;
}

/**
 * undici's Client, with a ledger of its current connection handed to every handler that asks
 * for one. The Pool's factory makes these. Two more things happen as a connection is made:
 * SNI never names an IP address (sniOf), and a connection that agreed on HTTP/2 takes many
 * exchanges at once while an HTTP/1.1 one takes one (undici reads one `pipelining` for both);
 * everything else is undici's own behaviour.
 */
export class LedgerClient extends Client {
  private readonly ledger: ConnectionLedger;

  constructor(origin: URL | string, options: Client.Options & { connect: buildConnector.connector }) {
    const ledger = new ConnectionLedger();
    const connect = options.connect;
    /** Set once undici's constructor has run: it is what may call the connector. */
    const hook: { setStreams?: (streams: number) => void } = {};
    super(origin, {
      ...options,
      connect: (opts, callback) => connect({ ...opts, servername: sniOf(opts.servername) }, (...args) => {
        // undici calls back with the error alone when the connection fails.
        const socket = args[1];
        if (args[0] === null && socket != null) {
          ledger.connected(socket);
          hook.setStreams?.(ledger.multiplexed ? H2_STREAMS : 1);
        }
        callback(...args);
      }),
    });
    hook.setStreams = (streams) => {
      if (this.pipelining !== streams) this.pipelining = streams;
    };
    this.ledger = ledger;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if ('connection' in handler) (handler as LedgerAware).connection = this.ledger;
    return super.dispatch(options, handler);
  }
}

/** The Pool's `factory`: undici passes the connector it built from the pool's options. */
export function ledgerClientFactory(origin: URL, options: object): Dispatcher {
  return new LedgerClient(origin, options as Client.Options & { connect: buildConnector.connector });
}
