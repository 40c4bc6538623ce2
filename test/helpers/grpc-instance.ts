// A gRPC service instance as a real child process: a @grpc/grpc-js server with the Echo
// service (fixtures/grpc/echo.proto: its unary Get and Put, Watch: `count` replies, one every
// delayMs, and the request streams Chat and Collect, below), made a member by tandem/node's
// serveGrpc(). For tests.
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

/** The deadline a call came with (ms left), -1 without one. */
function deadlineOf(call: { getDeadline(): grpc.Deadline }): number {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date || typeof deadline === 'number' ? Math.round(Number(deadline) - Date.now()) : -1;
  return Number.isFinite(ms) ? ms : -1;
}

/** A request's text as logged: a long one (a test's bulk) by its start and length. */
const shown = (text: string) => (text.length > 64 ? `${text.slice(0, 16)}…(${text.length})` : text);

/**
 * Chat (bidirectional): each request is logged ({"msg":"message","method":"Chat","text"}) as it
 * is read and answered `re: <text>` — with `count`, `<text> <n>` `count` times. A request with a
 * negative delayMs stops the server reading until SIGUSR2 (a server that does not read). With
 * `unavailable`, the first request is answered UNAVAILABLE before any reply: Trailers-Only, or
 * after the response headers when it asks `metadataFirst`.
 */
function chat(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>): void {
  let first: string | undefined;
  let failed = false;
  const deadlineMs = deadlineOf(call);
  call.on('data', (r: EchoRequest) => {
    const text = r.text ?? '';
    first ??= text;
    out({ msg: 'message', method: 'Chat', text: shown(text) });
    if (failed) return;
    if (opts.unavailable) {
      failed = true;
      if (r.metadataFirst) call.sendMetadata(new grpc.Metadata());
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: `${id} cannot serve (test)` });
      return;
    }
    if ((r.delayMs ?? 0) < 0) {
      call.pause();
      held.push(() => call.resume());
    }
    const count = r.count ?? 0;
    if (count === 0) call.write({ text: `re: ${shown(text)}`, instance: id, deadlineMs });
    for (let n = 0; n < count; n++) call.write({ text: `${text} ${n}`, instance: id, deadlineMs });
  });
  call.on('end', () => {
    out({ msg: 'answered', method: 'Chat', text: first ?? '' });
    if (!failed) call.end();
  });
  call.on('cancelled', () => out({ msg: 'cancelled', method: 'Chat', text: first ?? '' }));
  call.on('error', () => {});
}

/**
 * Collect (client streaming): each request logged as Chat's; once the client has ended, one
 * reply with the texts joined by commas — with `unavailable`, UNAVAILABLE (Trailers-Only).
 */
function collect(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>): void {
  const texts: string[] = [];
  const deadlineMs = deadlineOf(call);
  call.on('data', (r: EchoRequest) => {
    texts.push(shown(r.text ?? ''));
    out({ msg: 'message', method: 'Collect', text: shown(r.text ?? '') });
  });
  call.on('end', () => {
    out({ msg: 'answered', method: 'Collect', text: texts[0] ?? '' });
    if (opts.unavailable) callback({ code: grpc.status.UNAVAILABLE, details: `${id} cannot serve (test)` });
    else callback(null, { text: texts.join(','), instance: id, deadlineMs });
  });
  call.on('cancelled', () => out({ msg: 'cancelled', method: 'Collect', text: texts[0] ?? '' }));
}

const server = new grpc.Server();
server.addService(echoPackage().Echo.service, { Get: handler('Get'), Put: handler('Put'), Watch: watch, Chat: chat, Collect: collect });
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
