// A gRPC service instance as a real child process: a @grpc/grpc-js server with the Echo
// service (fixtures/grpc/echo.proto: its unary Get and Put, and Watch: `count` replies, one
// every delayMs), made a member by tandem/node's serveGrpc(). For tests.
// Usage: node grpc-instance.js '<json options>'
//   { registry: string | string[], service, id?, listen?, unavailable?: boolean, hold?: boolean,
//     drainQuietPeriod?, drainTimeout?, heartbeatInterval? }
// Prints {"msg":"serving","id","address","port"} once serveGrpc() resolved, {"msg":"call",
// "method","text"} as each call arrives and {"msg":"answered",…} as it is answered. With
// `unavailable`, every call is answered UNAVAILABLE (an instance that is up but cannot serve).
// A call with a negative delayMs — with `hold`, every call — is held until the process gets SIGUSR2.
import * as grpc from '@grpc/grpc-js';
import { serveGrpc } from '../../src/node/index.js';
import { echoPackage, type EchoReply, type EchoRequest } from './grpc-echo.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as {
  registry: string | string[]; service: string; id?: string; listen?: string; unavailable?: boolean; hold?: boolean;
  drainQuietPeriod?: number; drainTimeout?: number; heartbeatInterval?: number;
};
const out = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);
let id = opts.id ?? '';
/** Calls asked to wait (delayMs < 0) until SIGUSR2. */
const held: Array<() => void> = [];
process.on('SIGUSR2', () => { for (const answer of held.splice(0)) answer(); });

function handler(method: string): grpc.handleUnaryCall<EchoRequest, EchoReply> {
  return (call, callback) => {
    const text = call.request.text ?? '';
    out({ msg: 'call', method, text });
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date || typeof deadline === 'number' ? Math.round(Number(deadline) - Date.now()) : -1;
    const answer = () => {
      out({ msg: 'answered', method, text });
      if (opts.unavailable) callback({ code: grpc.status.UNAVAILABLE, details: `${id} cannot serve (test)` });
      else callback(null, { text, instance: id, deadlineMs: Number.isFinite(deadlineMs) ? deadlineMs : -1 });
    };
    const delay = call.request.delayMs ?? 0;
    if (delay < 0 || opts.hold) held.push(answer);
    else setTimeout(answer, delay);
  };
}

/** Watch: `count` replies `<text> <n>`, one every delayMs; with `unavailable`, UNAVAILABLE before any (Trailers-Only). */
function watch(call: grpc.ServerWritableStream<EchoRequest, EchoReply>): void {
  const text = call.request.text ?? '';
  out({ msg: 'call', method: 'Watch', text });
  if (opts.unavailable) {
    call.emit('error', { code: grpc.status.UNAVAILABLE, details: `${id} cannot serve (test)` });
    return;
  }
  let n = 0;
  let timer: NodeJS.Timeout | undefined;
  call.on('cancelled', () => {
    clearTimeout(timer);
    out({ msg: 'cancelled', method: 'Watch', text, sent: n });
  });
  const next = () => {
    if (call.cancelled) return;
    if (n === (call.request.count ?? 0)) {
      out({ msg: 'answered', method: 'Watch', text, sent: n });
      call.end();
      return;
    }
    call.write({ text: `${text} ${n++}`, instance: id, deadlineMs: -1 });
    out({ msg: 'sent', method: 'Watch', text, n });
    timer = setTimeout(next, call.request.delayMs ?? 0);
  };
  next();
}

const server = new grpc.Server();
server.addService(echoPackage().Echo.service, { Get: handler('Get'), Put: handler('Put'), Watch: watch });
const instance = await serveGrpc(server, {
  service: opts.service,
  registry: opts.registry,
  id: opts.id,
  listen: opts.listen,
  drainQuietPeriod: opts.drainQuietPeriod,
  drainTimeout: opts.drainTimeout,
  heartbeatInterval: opts.heartbeatInterval,
  healthServices: ['tandem.test.Echo'],
  logger: { info: out, warn: (f) => out({ level: 'warn', ...f }) },
});
id = instance.id;
out({ msg: 'serving', id: instance.id, address: instance.address, port: instance.port });
