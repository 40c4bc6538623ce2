import { connect, type Socket } from 'node:net';
import { GUARD_MS } from './wait.js';

/** What a raw client saw on one connection. */
export interface RawOutcome {
  /** Every byte the gateway sent, latin1. */
  data: string;
  /** Status of the first response, when one came. */
  status: number | undefined;
  /** How the connection ended: the gateway closed it (FIN), reset it, or the test gave up on it. */
  end: 'closed' | 'reset' | 'timeout';
}

/**
 * Opens a connection, writes `parts` in order and reads until the gateway closes it (or the
 * guard passes: then `end` is 'timeout' and the client closes; tests treat that as a failure). A part that is a function
 * is awaited instead of written: the test decides when the next bytes go (on an event, never a
 * fixed sleep). Writes after the gateway closed are dropped: what the gateway sent counts.
 */
export function rawExchange(port: number, parts: Array<string | Buffer | ((socket: Socket) => Promise<unknown>)>, guardMs = GUARD_MS): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    let done = false;
    const finish = (end: RawOutcome['end']) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(data);
      resolve({ data, status: m ? Number(m[1]) : undefined, end });
    };
    const timer = setTimeout(() => finish('timeout'), guardMs);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => { data += d; });
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNRESET' ? 'reset' : 'closed'));
    void (async () => {
      for (const part of parts) {
        if (done || socket.destroyed) return;
        if (typeof part === 'function') await part(socket);
        else socket.write(part);
      }
    })();
  });
}

/** The responses in `data`, in order: status and body of each (Content-Length or chunked framing). */
export function responses(data: string): Array<{ status: number; head: string; body: string }> {
  const out: Array<{ status: number; head: string; body: string }> = [];
  let at = 0;
  while (at < data.length) {
    const split = data.indexOf('\r\n\r\n', at);
    if (split < 0) break;
    const head = data.slice(at, split);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
    const bodiless = status === 204 || status === 304 || (status >= 100 && status < 200);
    at = split + 4;
    let body = '';
    if (bodiless) {
      // no body, whatever the headers say
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const eol = data.indexOf('\r\n', at);
        if (eol < 0) break;
        const size = parseInt(data.slice(at, eol), 16);
        at = eol + 2;
        if (!(size > 0)) {
          at += 2;
          break;
        }
        body += data.slice(at, at + size);
        at += size + 2;
      }
    } else {
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      body = data.slice(at, at + length);
      at += length;
    }
    out.push({ status, head, body });
  }
  return out;
}

/** The value of header `name` (case-insensitive) in a response head, or undefined. */
export function headerOf(head: string, name: string): string | undefined {
  const m = new RegExp(`\\r\\n${name}: *([^\\r]*)`, 'i').exec(head);
  return m?.[1];
}
