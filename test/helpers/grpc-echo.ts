// A real @grpc/grpc-js server of test/fixtures/grpc/echo.proto (and grpc.health.v1), in this
// process or as a child process (`node grpc-echo.js` prints its port), a client for it, and the
// loaded package (the definition tandem/client and serveGrpc() instances take).
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ROOT } from './gateway.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'grpc');

/** A request as a caller writes it (unset fields are the proto's defaults). */
export interface EchoRequest { text?: string; delayMs?: number; failCode?: number; count?: number; metadataFirst?: boolean }
export interface EchoReply { text: string; instance: string; deadlineMs: number }
/** A request as a server reads it (proto-loader's `defaults: true` fills every field). */
type Received = Required<EchoRequest>;

type EchoClient = grpc.Client & {
  Get(req: EchoRequest, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, reply?: EchoReply) => void): grpc.ClientUnaryCall;
  Put(req: EchoRequest, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, reply?: EchoReply) => void): grpc.ClientUnaryCall;
  Watch(req: EchoRequest, opts?: grpc.CallOptions): grpc.ClientReadableStream<EchoReply>;
  Chat(opts?: grpc.CallOptions): grpc.ClientDuplexStream<EchoRequest, EchoReply>;
  Collect(cb: (err: grpc.ServiceError | null, reply?: EchoReply) => void): grpc.ClientWritableStream<EchoRequest>;
};

function load(file: string): grpc.GrpcObject {
  return grpc.loadPackageDefinition(protoLoader.loadSync(join(FIXTURES, file), { keepCase: false, longs: Number, enums: String, defaults: true }));
}

/** test/fixtures/grpc/echo.proto through proto-loader, as an application loads its .proto: `Echo` has `.service`, the definition. */
export const echoPackage = (): { Echo: grpc.ServiceClientConstructor } => (load('echo.proto').tandem as grpc.GrpcObject).test as unknown as { Echo: grpc.ServiceClientConstructor };
const healthPackage = () => ((load('health.proto').grpc as grpc.GrpcObject).health as grpc.GrpcObject).v1 as grpc.GrpcObject;

export interface EchoServer {
  port: number;
  address: string;
  /** Calls seen, by method name ('Get', 'Put', …). */
  calls: Record<string, number>;
  /** What the health service answers ('SERVING' by default). */
  setHealth(status: 'SERVING' | 'NOT_SERVING'): void;
  /** Every unary call fails with this gRPC status (0: none do). */
  failAll(code: number): void;
  /** Every unary call waits this long more. */
  slowAll(ms: number): void;
  /** A graceful shutdown (grpc-js tryShutdown: GOAWAY, calls under way finish). */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** Starts an echo server on 127.0.0.1, port 0 (or `port`). */
export async function startEchoServer(port = 0): Promise<EchoServer> {
  const server = new grpc.Server();
  const calls: Record<string, number> = {};
  let health = 'SERVING';
  let failing = 0;
  let extraDelay = 0;
  let bound = 0;
  const reply = (text: string, call: grpc.ServerUnaryCall<Received, EchoReply> | grpc.ServerWritableStream<Received, EchoReply>): EchoReply => {
    const deadline = call.getDeadline();
    const left = deadline instanceof Date ? deadline.getTime() - Date.now() : typeof deadline === 'number' && Number.isFinite(deadline) ? deadline - Date.now() : -1;
    return { text, instance: String(bound), deadlineMs: Math.round(left) };
  };
  const unary = (name: string) => (call: grpc.ServerUnaryCall<Received, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) => {
    calls[name] = (calls[name] ?? 0) + 1;
    const r = call.request;
    if (r.metadataFirst) call.sendMetadata(new grpc.Metadata());
    setTimeout(() => {
      const code = failing || r.failCode;
      if (code !== 0) cb({ code, details: `failing with ${code} as asked` });
      else cb(null, reply(r.text, call));
    }, r.delayMs + extraDelay);
  };
  const service = echoPackage().Echo.service;
  server.addService(service, {
    Get: unary('Get'),
    Put: unary('Put'),
    Watch: (call: grpc.ServerWritableStream<Received, EchoReply>) => {
      calls.Watch = (calls.Watch ?? 0) + 1;
      let n = 0;
      const next = () => {
        if (n === call.request.count) {
          call.end();
          return;
        }
        call.write(reply(`${call.request.text} ${n++}`, call));
        setTimeout(next, call.request.delayMs);
      };
      next();
    },
    Chat: (call: grpc.ServerDuplexStream<Received, EchoReply>) => {
      calls.Chat = (calls.Chat ?? 0) + 1;
      call.on('data', (r: Received) => call.write({ text: `re: ${r.text}`, instance: String(bound), deadlineMs: -1 }));
      call.on('end', () => call.end());
    },
    Collect: (call: grpc.ServerReadableStream<Received, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) => {
      calls.Collect = (calls.Collect ?? 0) + 1;
      const texts: string[] = [];
      call.on('data', (r: Received) => texts.push(r.text));
      call.on('end', () => cb(null, { text: texts.join(','), instance: String(bound), deadlineMs: -1 }));
    },
  });
  server.addService((healthPackage().Health as grpc.ServiceClientConstructor).service, {
    Check: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: health }),
  });
  bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port: bound,
    address: `127.0.0.1:${bound}`,
    calls,
    setHealth: (s) => { health = s; },
    failAll: (code) => { failing = code; },
    slowAll: (ms) => { extraDelay = ms; },
    drain: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    close: () => new Promise<void>((resolve) => {
      server.forceShutdown();
      resolve();
    }),
  };
}

/** A grpc-js client of the echo service at `target` (host:port), plaintext. */
export function echoClient(target: string, options: grpc.ChannelOptions = {}): EchoClient {
  const Ctor = echoPackage().Echo;
  return new Ctor(target, grpc.credentials.createInsecure(), options) as unknown as EchoClient;
}

/** A grpc-js client over TLS (`ca` PEM text), naming `servername` in SNI and checking it. */
export function echoClientTls(target: string, ca: string, servername: string): EchoClient {
  const Ctor = echoPackage().Echo;
  return new Ctor(target, grpc.credentials.createSsl(Buffer.from(ca)), { 'grpc.ssl_target_name_override': servername, 'grpc.default_authority': servername }) as unknown as EchoClient;
}

/** One unary call; resolves with the reply or the error (never rejects). */
export function call(client: EchoClient, method: 'Get' | 'Put', req: EchoRequest, opts: grpc.CallOptions = {}): Promise<{ reply?: EchoReply; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client[method](req, new grpc.Metadata(), opts, (error, reply) => resolve(error ? { error } : { reply: reply! }));
  });
}

/** Starts an echo server as a child process (to be killed); resolves with it and its port. */
export async function spawnEchoServer(port = 0): Promise<{ proc: ChildProcess; port: number; address: string }> {
  const proc = fork(fileURLToPath(import.meta.url), [String(port)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const bound = await new Promise<number>((resolve, reject) => {
    proc.once('message', (m) => resolve(Number(m)));
    proc.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  return { proc, port: bound, address: `127.0.0.1:${bound}` };
}

export { grpc };

// As a child process: serve until killed, report the port to the parent.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = await startEchoServer(Number(process.argv[2] ?? 0));
  process.send?.(s.port);
}
