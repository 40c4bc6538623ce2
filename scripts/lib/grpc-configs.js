// Proxy configs for gRPC, shared by the gRPC drill (scripts/drill-grpc.js) and the HTTP/2 + gRPC
// benchmark (scripts/lib/bench-h2.js): each proxy gets the settings its documentation gives for
// proxying gRPC to plaintext HTTP/2 (h2c) instances, balanced per call.
import { nginxPreamble } from './nginx-preamble.js';

/** Full method names the tandem gateway may run twice (the drill's Get and Watch are reads). */
export const IDEMPOTENT_METHODS = ['/tandem.drill.Drill/Get', '/tandem.drill.Drill/Watch'];

/**
 * A tandem gateway with a `protocol: grpc` service. `endpoints` (host:port) are static members;
 * without them the service's members come from the gateway's registry (serveGrpc instances).
 */
export function tandemGrpcConfig({ port, adminPort, endpoints = null, service = 'drill', idempotent = IDEMPOTENT_METHODS, tls = null }) {
  const listen = tls
    ? `listen:\n  - address: 127.0.0.1:${port}\n    tls: { cert: ${tls.cert}, key: ${tls.key} }\n`
    : `listen: 127.0.0.1:${port}\n`;
  return `${listen}admin: 127.0.0.1:${adminPort}
log: { level: warn }
services:
  ${service}:
    protocol: grpc
${endpoints ? `    endpoints: [${endpoints.join(', ')}]\n` : ''}    grpc:
      idempotentMethods: [${idempotent.join(', ')}]
routes:
  - prefix: /
    service: ${service}
`;
}

/**
 * nginx with grpc_pass over `endpoints`, retrying on the next server on every failure it can see
 * (including non-idempotent calls), as the issue measured it. Timeouts of 1 s as the HTTP drill's
 * nginx (a frozen instance is given up on after 1 s); a server that failed once is left out for
 * 10 s (max_fails=1 fail_timeout=10s, as in the HTTP drill).
 */
export function nginxGrpcConfig({ dir, port, endpoints, drill = true, tls = null }) {
  const retry = drill
    ? `      grpc_connect_timeout 1s;
      grpc_read_timeout 1s;
      grpc_send_timeout 1s;
      grpc_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
      grpc_next_upstream_tries 3;
`
    : '';
  const listen = tls
    ? `    listen 127.0.0.1:${port} ssl http2;\n    ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};\n`
    : `    listen 127.0.0.1:${port} http2;\n`;
  return `${nginxPreamble(dir, { generator: 'scripts/lib/grpc-configs.js' })}  http2_max_requests 1000000;

  upstream grpc_instances {
${endpoints.map((e) => `    server ${e}${drill ? ' max_fails=1 fail_timeout=10s' : ''};`).join('\n')}
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }

  server {
${listen}    location / {
      grpc_pass grpc://grpc_instances;
${retry}    }
  }
}
`;
}

/** Caddy's reverse_proxy to h2c instances (its documented transport for gRPC without TLS). */
export function caddyGrpcConfig({ port, adminPort, endpoints, tls = null }) {
  const site = tls ? `https://127.0.0.1:${port}` : `http://127.0.0.1:${port}`;
  return `{
  admin 127.0.0.1:${adminPort}
  auto_https off
  servers {
    protocols h1 h2 h2c
  }
}

${site} {
${tls ? `  tls ${tls.cert} ${tls.key}\n` : ''}  reverse_proxy ${endpoints.map((e) => `h2c://${e}`).join(' ')} {
    lb_policy round_robin
  }
}
`;
}
