import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Step } from '../upstream/pipeline.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { AccessLogMode } from '../config/types.js';
import type { Route } from './router.js';
import { httpStatusOfGrpc } from '../upstream/grpc.js';

/** What an access line says about one request; docs/logging.md lists the fields. */
export interface AccessEntry {
  req: IncomingMessage;
  route: Route | undefined;
  endpoint: Endpoint | undefined;
  /** As the client saw it (499 when it went away). */
  status: number;
  started: number;
  requestId: string;
  code: string | undefined;
  attempts: number;
  traceId: string | undefined;
  /** A gRPC call's status (-1: none came, the call failed before it); undefined for other requests. */
  grpcStatus?: number;
}

/** Writes access lines at `log.access`'s level of detail ('errors': failed requests only). */
export class AccessLog {
  constructor(
    readonly mode: AccessLogMode,
    private readonly logger: Logger,
  ) {}

  write(e: AccessEntry): void {
    if (this.mode === 'off') return;
    // A gRPC call that failed on the service's side (UNAVAILABLE, INTERNAL, …) is a failure whatever its HTTP 200.
    const grpcFailed = e.grpcStatus !== undefined && e.grpcStatus > 0 && httpStatusOfGrpc(e.grpcStatus) >= 500;
    if (this.mode === 'errors' && e.status < 500 && e.code === undefined && !grpcFailed) return;
    // A failure is not news at info: a 5xx is a warning, and an answer cut off mid-body (the
    // status was sent, then the endpoint failed) an error — `log.level: warn` still shows both.
    const level = e.status >= 500 || grpcFailed ? 'warn' : e.code !== undefined && e.status < 400 ? 'error' : 'info';
    this.logger[level]({
      msg: 'request',
      requestId: e.requestId,
      traceId: e.traceId,
      method: e.req.method,
      path: e.req.url,
      route: e.route?.prefix,
      service: e.route?.service,
      endpoint: e.endpoint?.id,
      status: e.status,
      durationMs: Math.round((performance.now() - e.started) * 100) / 100,
      attempts: e.attempts,
      error: e.code,
      ...(e.grpcStatus === undefined ? {} : { grpcMethod: e.req.url, grpcStatus: e.grpcStatus }),
    });
  }
}

/** A handler that can carry an access line: the proxy's exchange writes it when it finishes. */
export interface AccessLogged {
  accessLog: AccessLog | undefined;
}

/**
 * The access log as a request step of every service's upstream: it hands the request's handler
 * the log to write its line to when it finishes (only the handler knows the status the client
 * saw). Not in the chain when `log.access` is 'off'; a reload swaps it (Upstream.setSteps).
 * It allocates nothing per request. Upgrades (WebSocket tunnels) get no access line, as before.
 */
export function accessLogStep(log: AccessLog): Step {
  return (next) => (request, handler) => {
    if (request.upgrade === undefined && 'accessLog' in handler) (handler as AccessLogged).accessLog = log;
    next(request, handler);
  };
}

/** The steps the gateway puts ahead of every service's engine steps, from its config. */
export function gatewaySteps(accessLog: AccessLog): Step[] {
  return accessLog.mode === 'off' ? [] : [accessLogStep(accessLog)];
}
