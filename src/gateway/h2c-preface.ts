import type { Socket } from 'node:net';

/** RFC 9113 §3.4: what a client speaking HTTP/2 with prior knowledge sends first. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Looks at a new plaintext connection's first bytes and calls `then(true)` when they are the
 * HTTP/2 connection preface (h2c with prior knowledge), `then(false)` for anything else — at
 * once when the first byte is not `P`, which is every HTTP/1.1 request but POST, PUT, PATCH
 * and PRI. Bytes read are put back (`unshift`): Node's HTTP/1.1 parser and its HTTP/2 session
 * both read what is already buffered on the socket before they read on. A connection that
 * sends nothing within `timeoutMs` is closed (no server has it yet, so no other timeout runs).
 */
export function peekPreface(socket: Socket, timeoutMs: number, then: (h2: boolean) => void): void {
  let seen: Buffer | undefined;
  const onData = (chunk: Buffer): void => {
    const bytes = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(bytes.length, PREFACE.length);
    const match = bytes.compare(PREFACE, 0, n, 0, n) === 0;
    if (match && n < PREFACE.length) {
      seen = bytes; // a prefix of the preface: wait for the rest
      return;
    }
    socket.off('data', onData);
    socket.setTimeout(0);
    socket.off('timeout', onTimeout);
    socket.pause();
    socket.unshift(bytes);
    then(match);
    // The HTTP/1.1 server reads by 'data' events; the HTTP/2 session reads the buffer it was
    // given and then straight from the handle, so its socket stays paused.
    if (!match) socket.resume();
  };
  const onTimeout = (): void => { socket.destroy(); };
  socket.on('data', onData);
  socket.setTimeout(timeoutMs);
  socket.once('timeout', onTimeout);
}
