/**
 * The standard gRPC health service (grpc.health.v1.Health, grpc/grpc health-checking.md),
 * without a .proto file or a protobuf library: its two messages have one field each, written
 * and read here by hand.
 *
 *   message HealthCheckRequest { string service = 1; }
 *   message HealthCheckResponse { ServingStatus status = 1; }   // UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3
 */

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

const STATUS_NUMBER: Readonly<Record<ServingStatus | 'SERVICE_UNKNOWN', number>> = { SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 };

/** gRPC status codes this file answers with. */
const NOT_FOUND = 5;

/** The parts of a grpc-js server call the health service uses (structural: no import of grpc-js). */
interface UnaryCall { request: { service: string } }
type UnaryCallback = (error: { code: number; details: string } | null, value?: { status: number }) => void;
interface WatchCall {
  request: { service: string };
  write(message: { status: number }): boolean;
  end(): void;
  on(event: 'cancelled' | 'close', listener: () => void): unknown;
}

/** A protobuf varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function encodeRequest(message: { service?: string }): Buffer {
  const name = Buffer.from(message.service ?? '', 'utf8');
  return name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, ...varint(name.length)]), name]);
}

function encodeResponse(message: { status: number }): Buffer {
  return message.status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, ...varint(message.status)]);
}

/** Reads the fields of a message: varints as numbers, length-delimited ones as bytes; others skipped. */
function fields(buf: Buffer): Map<number, number | Buffer> {
  const out = new Map<number, number | Buffer>();
  let i = 0;
  const readVarint = (): number => {
    let n = 0;
    let shift = 0;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated protobuf varint');
      const b = buf[i++]!;
      n += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return n;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) out.set(field, readVarint());
    else if (wire === 2) {
      const len = readVarint();
      out.set(field, buf.subarray(i, i + len));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

function decodeRequest(buf: Buffer): { service: string } {
  const name = fields(buf).get(1);
  return { service: Buffer.isBuffer(name) ? name.toString('utf8') : '' };
}

function decodeResponse(buf: Buffer): { status: number } {
  const status = fields(buf).get(1);
  return { status: typeof status === 'number' ? status : 0 };
}

const method = (name: string, responseStream: boolean) => ({
  path: `/grpc.health.v1.Health/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: encodeRequest,
  requestDeserialize: decodeRequest,
  responseSerialize: encodeResponse,
  responseDeserialize: decodeResponse,
  originalName: name.toLowerCase(),
});

/** grpc.health.v1.Health as a grpc-js service definition (for `server.addService`, or a client). */
export const HEALTH_SERVICE = Object.freeze({ Check: method('Check', false), Watch: method('Watch', true) });

/** The numeric ServingStatus of a HealthCheckResponse, by name. */
export const SERVING_STATUS = STATUS_NUMBER;

/**
 * The health service's state and handlers: one status for every name it knows (the empty name
 * is the server as a whole); Check answers it, Watch streams it and every change. A name it
 * does not know is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, as the protocol says.
 */
export class HealthService {
  private status: ServingStatus = 'NOT_SERVING';
  private readonly names: ReadonlySet<string>;
  private readonly watchers = new Set<WatchCall>();
  /** Watches of names it does not know: kept open (the protocol says so), told nothing more. */
  private readonly parked = new Set<WatchCall>();

  constructor(names: Iterable<string>) {
    this.names = new Set(['', ...names]);
  }

  get current(): ServingStatus {
    return this.status;
  }

  set(status: ServingStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const call of this.watchers) call.write({ status: STATUS_NUMBER[status] });
  }

  /** Ends every Watch stream (a graceful shutdown waits for running calls, and these never end by themselves). */
  endWatches(): void {
    for (const call of [...this.watchers, ...this.parked]) call.end();
    this.watchers.clear();
    this.parked.clear();
  }

  /** The implementation to pass to `server.addService(HEALTH_SERVICE, …)`. */
  readonly handlers = {
    Check: (call: UnaryCall, callback: UnaryCallback): void => {
      if (!this.names.has(call.request.service)) callback({ code: NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
      else callback(null, { status: STATUS_NUMBER[this.status] });
    },
    Watch: (call: WatchCall): void => {
      const known = this.names.has(call.request.service);
      call.write({ status: known ? STATUS_NUMBER[this.status] : STATUS_NUMBER.SERVICE_UNKNOWN });
      const set = known ? this.watchers : this.parked;
      set.add(call);
      const forget = () => { set.delete(call); };
      call.on('cancelled', forget);
      call.on('close', forget);
    },
  };
}
