import type { IncomingMessage } from 'node:http';
import type { ErrorCode } from '../core/errors.js';
import { rewriteRequestHeaders, type RequestFacts } from './headers.js';
import { isValidAuthority, splitAbsoluteTarget } from './authority.js';
import { isPathProblem, normalizePath } from '../core/path.js';
import type { Route, Router } from './router.js';

/**
 * What the gateway checks before a request may go anywhere, for plain requests and upgrades
 * alike. Everything here is about what the client sent; a request refused here never reaches
 * an endpoint, so it cannot count against one.
 */

/** Why the gateway answers a request itself. */
export interface Refusal {
  readonly status: number;
  readonly code: ErrorCode;
  readonly message: string;
  /** The connection is closed after the answer: its framing, or the client, is in doubt. */
  readonly close: boolean;
}

/** A request looked at: its rewritten headers, its normalized path, and where it goes or why not. */
export interface Admission {
  readonly facts: RequestFacts;
  /** Normalized path and query: routed by, and (prefix stripped or not) forwarded. */
  readonly path: string;
  /** The authority routed by: the absolute-form target's, else the Host header's. */
  readonly host: string | undefined;
  readonly route: Route | undefined;
  /** Set when the request is not forwarded; `route` is then undefined. */
  readonly refusal: Refusal | undefined;
}

/** What admission needs from the gateway. */
export interface AdmissionContext {
  readonly router: Router;
  readonly maxHeaders: number;
  readonly proto: 'http' | 'https';
}

/**
 * Rewrites the headers, then checks, in order: the HTTP version, the number of header lines,
 * the request target, Host, Transfer-Encoding on HTTP/1.0, the path; then routes.
 */
export function admit(ctx: AdmissionContext, req: IncomingMessage, peerIp: string, trusted: boolean): Admission {
  if (req.httpVersionMajor === 2 && isHttp2(req)) return admitHttp2(ctx, req, peerIp, trusted);
  const url = req.url ?? '/';
  const absolute = url.charCodeAt(0) === 47 /* / */ ? undefined : splitAbsoluteTarget(url);
  const facts = rewriteRequestHeaders(req.rawHeaders, peerIp, trusted, ctx.proto, false, absolute?.authority);
  const host = absolute?.authority ?? facts.host;
  if (req.httpVersionMajor !== 1) {
    // llhttp hands over "GET /x" (HTTP/0.9, headers and all) and "GET /x HTTP/2.0" as if they
    // were HTTP/1.x requests. Neither is a request line this proxy may re-frame as HTTP/1.1.
    return refused(facts, url, host, badRequest(`HTTP/${req.httpVersion} request lines are not accepted`));
  }
  // Counted here, not by Node's maxHeadersCount, which drops the lines past it silently —
  // Content-Length among them — and would forward what is left.
  if (req.rawHeaders.length > 2 * ctx.maxHeaders) {
    return refused(facts, url, host, { status: 431, code: 'TANDEM_ERR_HEADERS_TOO_LARGE', message: `more than ${ctx.maxHeaders} header lines`, close: true });
  }
  if (absolute === undefined && url.charCodeAt(0) !== 47) return refused(facts, url, host, badRequest('request target is not a path'));
  if (facts.hostLines !== 1) {
    // HTTP/1.1 requires exactly one (RFC 9112 §3.2); HTTP/1.0 predates it and may omit it.
    if (facts.hostLines > 1) return refused(facts, url, host, badRequest(`${facts.hostLines} Host headers; one is allowed`));
    if (req.httpVersionMinor !== 0) return refused(facts, url, host, badRequest('an HTTP/1.1 request needs a Host header'));
  }
  if (facts.host !== undefined && !isValidAuthority(facts.host)) return refused(facts, url, host, badRequest('the Host header is not a valid host[:port]'));
  if (facts.chunked && req.httpVersionMinor === 0) {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty; the body end
    // and the next request's start cannot be known.
    return refused(facts, url, host, badRequest('Transfer-Encoding in an HTTP/1.0 request'));
  }
  return routed(ctx, facts, url, host, absolute?.path ?? url);
}

/**
 * An HTTP/2 request (RFC 9113 §8.3): the pseudo-headers are not forwarded; `:authority` is the
 * authority routed by and forwarded as Host (the client's Host header, if it sent one too, is
 * replaced, as for an absolute-form target); cookie lines are joined into one (§8.2.3). The
 * framing is HTTP/2's own — no Transfer-Encoding, no request line — and Node has already refused
 * connection-specific headers; nothing the HTTP/1.1 checks guard against can reach here.
 */
function admitHttp2(ctx: AdmissionContext, req: IncomingMessage & { authority?: string }, peerIp: string, trusted: boolean): Admission {
  const url = req.url ?? '/';
  const raw = http2HeaderLines(req.rawHeaders);
  const authority = req.authority || undefined;
  const facts = rewriteRequestHeaders(raw, peerIp, trusted, ctx.proto, false, authority);
  const host = authority ?? facts.host;
  if (raw.length > 2 * ctx.maxHeaders) {
    return refused(facts, url, host, { status: 431, code: 'TANDEM_ERR_HEADERS_TOO_LARGE', message: `more than ${ctx.maxHeaders} header lines`, close: false });
  }
  if (url.charCodeAt(0) !== 47) return refused(facts, url, host, stream400('the :path is not a path'));
  if (host === undefined) return refused(facts, url, host, stream400('an HTTP/2 request needs :authority or Host'));
  if (facts.hostLines > 1 && authority === undefined) return refused(facts, url, host, stream400(`${facts.hostLines} Host headers; one is allowed`));
  if (!isValidAuthority(host)) return refused(facts, url, host, stream400('the authority is not a valid host[:port]'));
  return routed(ctx, facts, url, host, url);
}

/** The HTTP/2 request's header lines without its pseudo-headers, its cookie crumbs joined into one line. */
export function http2HeaderLines(raw: readonly string[]): string[] {
  const out: string[] = [];
  let cookie: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (name === 'cookie') cookie = cookie === undefined ? raw[i + 1]! : `${cookie}; ${raw[i + 1]!}`;
    else out.push(name, raw[i + 1]!);
  }
  if (cookie !== undefined) out.push('cookie', cookie);
  return out;
}

/** A request arrived over HTTP/2 (Node's compatibility API): it has a stream of its own. */
export function isHttp2(req: object): boolean {
  return (req as { stream?: unknown }).stream !== undefined;
}

/** The path normalized and routed. */
function routed(ctx: AdmissionContext, facts: RequestFacts, url: string, host: string | undefined, target: string): Admission {
  const path = normalizePath(target);
  if (isPathProblem(path)) return refused(facts, url, host, badRequest(path.problem));
  const route = ctx.router.match(host, path);
  if (route === undefined) {
    return { facts, path, host, route, refusal: { status: 404, code: 'TANDEM_ERR_NO_ROUTE', message: `no route for ${host ?? ''}${path}`, close: false } };
  }
  return { facts, path, host, route, refusal: undefined };
}

function refused(facts: RequestFacts, path: string, host: string | undefined, refusal: Refusal): Admission {
  return { facts, path, host, route: undefined, refusal };
}

function badRequest(message: string): Refusal {
  return { status: 400, code: 'TANDEM_ERR_BAD_REQUEST', message, close: true };
}

/** An HTTP/2 request refused: its stream ends, the connection's other streams go on. */
function stream400(message: string): Refusal {
  return { status: 400, code: 'TANDEM_ERR_BAD_REQUEST', message, close: false };
}
