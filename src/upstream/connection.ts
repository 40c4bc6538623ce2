import type { Socket } from 'node:net';
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

  /**
   * A new connection replaced the previous one. Over TLS the same holds: `bytesRead` of a TLS
   * socket counts the decrypted bytes of the responses, and its handle answers getpeername as
   * a plain TCP one does (both measured, test/upstream-tls.test.ts).
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
export function startExchange(ledger: ConnectionLedger | undefined): number {
  if (ledger === undefined || ledger.socket === undefined || ledger.multiplexed) return -1;
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
