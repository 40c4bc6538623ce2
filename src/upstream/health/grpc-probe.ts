import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { GRPC } from '../grpc.js';

/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING */
const SERVING = 1;

/**
 * One active check of a gRPC endpoint: `grpc.health.v1.Health/Check` over a connection of the
 * prober's own (HTTP/2 cleartext, kept between checks). The two messages are encoded by hand —
 * a request with one string field, a response with one enum field — rather than loading
 * @grpc/grpc-js and a .proto into the gateway for them.
 *
 * Passes: `SERVING`, or UNIMPLEMENTED (a server without the health service is up and answering,
 * as a 404 passes an HTTP check). Fails: any other status or serving state (NOT_SERVING while
 * the instance starts or drains), a timeout, a connection error.
 */
export class GrpcHealthProbe {
  private session: ClientHttp2Session | undefined;
  private readonly request: Buffer;

  constructor(private readonly origin: string, service: string, private readonly timeoutMs: number) {
    this.request = frame(service === '' ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(Buffer.byteLength(service)), Buffer.from(service)]));
  }

  check(): Promise<boolean> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (ok: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(ok);
      };
      const session = this.connection();
      const timer = setTimeout(() => {
        // A frozen endpoint: its connection is dropped, the next check opens a new one.
        session.destroy();
        done(false);
      }, this.timeoutMs);
      let stream;
      try {
        stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers', 'user-agent': 'tandem-health-check' });
      } catch {
        done(false);
        return;
      }
      const chunks: Buffer[] = [];
      let headers: IncomingHttpHeaders = {};
      stream.on('response', (h) => { headers = h; });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('trailers', (t) => { headers = { ...headers, ...t }; });
      stream.on('error', () => done(false));
      stream.on('close', () => done(passed(headers, Buffer.concat(chunks))));
      stream.end(this.request);
    });
  }

  close(): void {
    this.session?.destroy();
    this.session = undefined;
  }

  private connection(): ClientHttp2Session {
    if (this.session !== undefined && !this.session.closed && !this.session.destroyed) return this.session;
    const session = connect(this.origin);
    session.on('error', () => {});
    session.unref();
    this.session = session;
    return session;
  }
}

function passed(headers: IncomingHttpHeaders, body: Buffer): boolean {
  if (Number(headers[':status']) !== 200) return false;
  const status = Number(headers['grpc-status'] ?? GRPC.INTERNAL);
  if (status === GRPC.UNIMPLEMENTED) return true;
  return status === GRPC.OK && servingStatus(body) === SERVING;
}

/** The `status` field (1, varint) of a framed HealthCheckResponse; 0 (UNKNOWN) when absent. */
function servingStatus(body: Buffer): number {
  if (body.length < 5) return 0;
  const end = Math.min(body.length, 5 + body.readUInt32BE(1));
  let at = 5;
  while (at < end) {
    const [tag, next] = readVarint(body, at);
    at = next;
    if (tag === 0x08) return readVarint(body, at)[0];
    switch (tag & 7) {
      case 0: at = readVarint(body, at)[1]; break;
      case 2: { const [len, after] = readVarint(body, at); at = after + len; break; }
      default: return 0; // no other wire type in this message
    }
  }
  return 0;
}

function readVarint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  while (at < buf.length) {
    const b = buf[at++]!;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
    shift += 7;
  }
  return [value, at];
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A gRPC length-prefixed message: not compressed, 4-byte big-endian length, the bytes. */
function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}
