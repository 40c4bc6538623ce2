import type { Server } from 'node:http';
import { LinkedSet } from '../core/linked-set.js';
import type { Http2ServerRequest } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { GatewayConfig, LimitsConfig, ListenerConfig } from '../config/types.js';
import { ClientListener } from './listener.js';
import { ConfigError, type ConfigProblem } from '../config/problems.js';
import { trustedProxyList } from '../config/validate.js';
import { formatEndpoint, formatHostPort, type HostPort } from '../core/address.js';
import { isOwnAddress } from './own-address.js';
import { Upstream, type UpstreamOptions } from '../upstream/upstream.js';
import { createGatewayRegistry } from '../observe/metrics.js';
import { Router } from './router.js';
import { handleCheckContinue, handleRequest, type ProxyContext } from './proxy.js';
import { handleUpgrade } from './websocket.js';
import { answerClientError } from './client-error.js';
import { BodyGuard, type BodyGuardOptions } from './body-guard.js';
import { createAdminServer } from './admin.js';
import { adminSecret, type AdminSecret } from './admin-guard.js';
import { handleRegistryApi } from './registry-api.js';
import { EmbeddedRegistry } from '../discovery/embedded.js';
import { ExternalMembers, etcdRegistryOf, type MemberChange } from './external-members.js';
import type { EndpointConfig, ServiceConfig } from '../config/types.js';
import { VERSION } from '../version.js';
import { tracingReady } from '../observe/trace.js';
import { ClusterFeed } from './dashboard-feed.js';
import { HEALTH_STATE_KINDS } from '../upstream/endpoint.js';
import { FAILURE_KINDS } from '../upstream/resilience/retry-policy.js';
import { upstreamSettingsOf } from './upstream-settings.js';
import { AccessLog, gatewaySteps } from './access-log.js';
import { RouteCaches, routeCacheStep } from './route-caches.js';
import type { Step } from '../upstream/pipeline.js';
import { TandemError } from '../core/errors.js';
import { describeChange, PeerWatch } from './peer-watch.js';
import type { HandoverListener } from './handover.js';

/** Longest wait after start for registered members before /readyz says ready (see membersSettled). */
export const REGISTRY_WARMUP_MS = 3_000;
/** A handover keeps the listener open until no connection arrived for this long (see untilNoNewConnections). */
export const HANDOVER_QUIET_MS = 300;
const HANDOVER_QUIET_MAX_MS = 5_000;

/**
 * The gateway process: a client listener that routes and proxies, an admin listener, and one
 * Upstream per service. Config is swapped whole on reload; requests already running keep the
 * routing table they started with.
 */
export class Gateway {
  private config: GatewayConfig;
  private readonly upstreams = new Map<string, Upstream>();
  /** Writes access lines as log.access says; the gateway's request steps (gatewaySteps) are made from it. */
  private accessLog: AccessLog;
  /** Put ahead of every service's engine steps; replaced on reload. */
  private steps: Step[];
  /** The response caches of routes with `cache`, kept across reloads. */
  private readonly caches: RouteCaches;
  private ctx: ProxyContext;
  /** The same context for requests on TLS listeners (X-Forwarded-Proto: https). */
  private secureCtx: ProxyContext;
  /** The client listeners, in the config's order. */
  private readonly listeners: ClientListener[];
  private readonly admin: Server;
  private readonly live = { inflight: 0, draining: false, unrouted: [0, 0, 0, 0, 0, 0], tunnels: new LinkedSet<Duplex>() };
  private readonly bodyGuard: BodyGuard;
  private readonly startedAt = Date.now();
  private drained: Promise<void> | undefined;
  private settled = false;
  /** When the client listener last accepted a connection (a handover waits for quiet). */
  private lastConnectionAt = 0;
  /** Client connections open now (a handover that drops new ones waits for these). */
  private openConnections = 0;
  /** A handover waits for the open connections to end by themselves (see HandoverListener.awaitConnections). */
  private awaitingConnections = false;
  /** Between SIGTERM and the address's release (a pair's handover): /readyz?address still says hold it. */
  private releasing = false;
  private readonly registryChanges: Record<string, number> = {};
  readonly logger: Logger;
  /** The embedded registry: instances that registered over the admin listener. */
  readonly registry: EmbeddedRegistry;
  private readonly registrySubscription: { dispose(): void };
  /** Members from etcd (`registry.etcd`) for the services without `endpoints`; undefined without etcd. */
  private readonly external: ExternalMembers | undefined;
  /** Samples and the timeline behind the dashboard, /admin/dashboard and `tandem status`. */
  readonly feed: ClusterFeed;
  /** The admin listener's secret (docs/security.md). */
  private secret: AdminSecret;
  /** The other gateways of a pair and who holds the virtual address (config `peers`, `virtualAddress`). */
  private readonly peers: PeerWatch;

  private constructor(config: GatewayConfig, logger: Logger) {
    this.config = config;
    this.logger = logger;
    this.secret = adminSecret(config.registry, config.admin);
    const r = config.registry;
    this.registry = new EmbeddedRegistry({ ttl: r.ttl, maxMetadataSize: r.maxMetadataSize, maxInstances: r.maxInstances, maxInstancesPerPeer: r.maxInstancesPerPeer });
    this.feed = new ClusterFeed({
      upstreams: () => this.upstreams.values(),
      draining: (service) => [...this.registry.snapshotNow(service).instances, ...(this.external?.instances(service) ?? [])].filter((i) => i.state === 'draining'),
      gateway: () => ({ version: VERSION, uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000), draining: this.live.draining, inflight: this.live.inflight, listen: this.listeners[0]!.server.listening ? this.listenAddress : '' }),
      gateways: () => (this.admin.listening ? this.peers.views() : []),
      caches: () => this.caches.stats(),
    }, 1000, (service, refused) => this.logger.warn({ msg: 'retry budget exhausted', event: 'budget-exhausted', service, refused }));
    this.peers = new PeerWatch({
      self: () => ({ address: this.adminAddress, ready: this.isReady() }), peers: config.peers, virtualAddress: config.virtualAddress,
      onChange: (now, before) => {
        const text = describeChange(now, before, this.config.virtualAddress);
        this.logger[now.ready === false && !now.self ? 'warn' : 'info']({ msg: 'gateway peer', event: 'peer', gateway: now.address, self: now.self, ready: now.ready, holdsAddress: now.holdsAddress, error: now.error });
        this.feed.record('peer', text, undefined, now.address);
      },
    });
    this.accessLog = new AccessLog(config.log.access, logger);
    this.caches = new RouteCaches(logger, (route, service, failing, reason) =>
      this.feed.record('cache', failing ? `${route}: the origin fails (${reason}); stale entries are served where allowed` : `${route}: the origin answers again`, service));
    this.steps = this.gatewaySteps(config);
    const etcd = etcdRegistryOf(config.registry);
    this.external = etcd && new ExternalMembers(etcd, (service, changes) => this.externalChanged(service, changes), (service, instance) => this.passesChecks(service, instance.address));
    for (const [name, svc] of config.services) this.upstreams.set(name, new Upstream(upstreamSettingsOf(this.withMembers(svc)), this.steps, this.upstreamOptions()));
    // Synchronous: when the registry answers a state change, the upstreams have applied it, so
    // an instance told "draining" is acknowledged gets no new request from this gateway.
    this.registrySubscription = this.registry.subscribe((change) => {
      this.registryChanges[change.kind] = (this.registryChanges[change.kind] ?? 0) + 1;
      const upstream = this.upstreams.get(change.service);
      const svc = this.config.services.get(change.service);
      if (upstream && svc) upstream.setMembers(this.withMembers(svc).endpoints);
      const event = change.kind === 'registered' ? 'join' : change.kind !== 'state' ? 'leave' : change.instance.state === 'draining' ? 'drain' : 'instance-state';
      const { id, address, state } = change.instance;
      this.logger.info({ msg: 'registry', event, change: change.kind, cause: change.cause, service: change.service, instance: id, address, state });
      if (change.cause !== undefined) this.feed.leave(change.service, id, address, change.cause);
      else this.feed.record(event === 'instance-state' ? 'state' : event, `${id} (${address}) ${change.kind === 'registered' ? 'joined' : `is ${state}`}`, change.service, address);
    });
    this.external?.follow(fromRegistry(config));
    this.bodyGuard = new BodyGuard(bodyGuardOptions(config.limits));
    this.ctx = this.buildContext(config);
    this.secureCtx = { ...this.ctx, proto: 'https' };
    const limits = config.limits;
    this.listeners = config.listen.map((l) => this.createListener(l, limits));
    const registry = createGatewayRegistry({
      services: () => [...this.upstreams.values()].map((u) => ({
        name: u.name, endpoints: u.endpoints, stateKinds: HEALTH_STATE_KINDS, retryReasons: FAILURE_KINDS, localResponses: u.stats.local, latency: u.stats.latency, ejections: u.stats.ejections, panic: u.inPanic,
        retries: u.stats.retries, hedges: u.stats.hedges, hedgeWins: u.stats.hedgeWins, budgetExhausted: u.stats.budgetExhausted,
        active: u.stats.active, overloaded: u.stats.overloaded, grpcCalls: u.grpcCalls,
      })),
      unrouted: this.live.unrouted,
      inflight: () => this.live.inflight,
      registered: () => this.registeredCounts(),
      registryChanges: () => this.registryChanges,
      gateways: () => (this.config.peers.length > 0 || this.config.virtualAddress !== undefined ? this.peers.views() : []),
      caches: () => this.caches.stats(),
      version: VERSION,
    });
    this.admin = createAdminServer({
      feed: this.feed,
      ready: () => this.isReady(),
      releasing: () => this.releasing,
      holdsAddress: () => this.peers.holdsAddress(),
      cluster: () => this.cluster(),
      registry,
      registryApi: (req, res, path) => handleRegistryApi(this.registry, {
        refuseAddress: (ip, port) => this.ownListener(ip, port),
        bodyTimeout: this.config.limits.headersTimeout,
      }, req, res, path),
      guard: { secret: () => this.secret.token, address: () => boundAddress(this.admin) },
    }, { headersTimeout: limits.headersTimeout });
  }

  /** Members from etcd changed: the upstream takes them, each change is logged and on the timeline. */
  private externalChanged(service: string, changes: readonly MemberChange[]): void {
    const upstream = this.upstreams.get(service);
    const svc = this.config.services.get(service);
    if (upstream && svc && !this.live.draining) upstream.setMembers(this.withMembers(svc).endpoints);
    for (const { kind, instance: { id, address, state } } of changes) {
      if (kind === 'lost') {
        this.logger.warn({ msg: 'registry', event: 'lost', registry: 'etcd', service, instance: id, address, state, detail: 'left etcd without a drain while passing its health checks: kept until a check fails or it registers again' });
        this.feed.record('leave', `${id} (${address}) left etcd while serving: kept while its checks pass`, service, address);
        continue;
      }
      this.logger.info({ msg: 'registry', event: kind === 'state' ? 'instance-state' : kind, registry: 'etcd', service, instance: id, address, state });
      this.feed.record(kind, `${id} (${address}) ${kind === 'join' ? 'joined' : kind === 'leave' ? 'left' : `is ${state}`} (etcd)`, service, address);
    }
  }

  /** Whether the endpoint at `address` of `service` is judged healthy by active health checks (the gateway's own evidence it serves). */
  private passesChecks(service: string, address: string): boolean {
    if (this.config.services.get(service)?.healthCheck === false) return false;
    return this.upstreams.get(service)?.snapshot().some((e) => e.id === address && e.state === 'healthy') ?? false;
  }

  /** Why an instance may not be at ip:port: it is one of this gateway's own listeners. */
  private ownListener(ip: string, port: number): string | undefined {
    for (const [name, server] of [...this.servers().map((s) => ['listen', s] as const), ['admin', this.admin] as const]) {
      if (!server.listening) continue;
      const a = boundAddress(server);
      if (a.port === port && isOwnAddress(ip, a.host)) return `${formatHostPort(ip, port)} is this gateway's own ${name} listener, never a service instance`;
    }
    return undefined;
  }

  private isReady(): boolean {
    return !this.live.draining && this.membersSettled();
  }

  /**
   * After a (re)start the registry is empty until instances register again (the SDK does so
   * within about a second of the gateway answering). Until every service that has no
   * `endpoints` has a member, or REGISTRY_WARMUP_MS passed, /readyz says 503, so a load
   * balancer in front does not send traffic that could only get 503.
   */
  private membersSettled(): boolean {
    if (this.settled) return true;
    const waiting = [...this.config.services.values()].some((svc) => svc.endpoints.length === 0 && (this.upstreams.get(svc.name)?.endpoints.length ?? 0) === 0);
    this.settled = !waiting || Date.now() - this.startedAt >= REGISTRY_WARMUP_MS;
    return this.settled;
  }

  /**
   * The service's config with its members: the endpoints written in the config, then every
   * registered instance that is ready (a draining one gets no new request; its pool finishes
   * what it has and closes). An address listed both ways counts once, with the config's weight.
   */
  private withMembers(svc: ServiceConfig): ServiceConfig {
    const registered = [...this.registry.snapshotNow(svc.name).instances];
    // etcd is read by the gateway, not written through it: the own-listener rule the registry
    // API applies to a registration is applied here.
    if (svc.endpoints.length === 0 && this.external) for (const i of this.external.instances(svc.name)) if (this.ownListener(i.host, i.port) === undefined) registered.push(i);
    if (registered.length === 0) return svc;
    const seen = new Set(svc.endpoints.map((e) => formatEndpoint(e.host, e.port, e.tls)));
    const endpoints: EndpointConfig[] = [...svc.endpoints];
    for (const inst of registered) {
      if (inst.state !== 'ready' || seen.has(inst.address)) continue;
      seen.add(inst.address);
      endpoints.push({ host: inst.host, port: inst.port, weight: inst.weight, ...(inst.tls === true ? { tls: true } : {}) });
    }
    return { ...svc, endpoints };
  }

  /** Health decisions become log lines; leaving rotation and panic are warnings. */
  private upstreamOptions(): UpstreamOptions {
    return {
      onTransition: (t) => {
        const out = t.to === 'ejected' || t.to === 'unhealthy';
        // An instance kept after leaving etcd goes once it fails (after this transition: it changes the members).
        if (out && this.external) queueMicrotask(() => this.external?.forget(t.service, t.endpoint));
        this.logger[out ? 'warn' : 'info']({ msg: 'endpoint state', event: t.to === 'ejected' ? 'ejection' : 'endpoint-state', service: t.service, endpoint: t.endpoint, from: t.from, to: t.to, reason: t.reason });
        this.feed.record(t.to === 'ejected' ? 'ejection' : 'state', `${t.from} → ${t.to}${t.reason === t.to ? '' : ` (${t.reason})`}`, t.service, t.endpoint);
      },
      onPanic: (service, panic) => {
        this.logger[panic ? 'warn' : 'info']({ msg: panic ? 'service panic' : 'service panic over', event: 'panic', service, panic });
        this.feed.record('panic', panic ? 'panic: too few endpoints eligible, traffic spread over all' : 'panic over', service);
      },
    };
  }

  /** Binds both listeners. On failure nothing stays bound. */
  static async start(config: GatewayConfig, logger: Logger): Promise<Gateway> {
    await tracingReady;
    const gw = new Gateway(config, logger);
    try {
      await listen(gw.admin, config.admin.host, config.admin.port, 'admin');
      for (const [i, l] of config.listen.entries()) await listen(gw.listeners[i]!.server, l.host, l.port, config.listen.length > 1 ? `listen[${i}]` : 'listen');
    } catch (err) {
      gw.feed.close();
      gw.admin.close();
      for (const server of gw.servers()) if (server.listening) server.close();
      await Promise.all([...gw.upstreams.values()].map((u) => u.close()));
      throw err;
    }
    // Where the admin secret comes from, never the secret itself: logs travel further than files.
    logger.info({ msg: 'listening', listen: gw.listenAddress, listeners: gw.listenUrls, admin: gw.adminAddress, services: [...config.services.keys()], version: VERSION, secret: gw.secret.source, secretFile: gw.secret.file });
    gw.feed.record('start', `gateway ${VERSION} started: listening on ${gw.listenUrls.join(', ')}, dashboard at http://${gw.adminAddress}/`);
    gw.peers.start();
    return gw;
  }

  /** The first client listener's bound address. */
  get listenAddress(): string {
    const a = this.listeners[0]!.server.address() as AddressInfo;
    return formatHostPort(a.address, a.port);
  }

  /** Every client listener, as `http://host:port` or `https://host:port`. */
  get listenUrls(): string[] {
    return this.listeners.map((l) => {
      const a = l.server.address() as AddressInfo;
      return `${l.secure ? 'https' : 'http'}://${formatHostPort(a.address, a.port)}`;
    });
  }

  /** The client listeners' bound ports (a pair's guard drops connection attempts to them while nothing listens). */
  get listenPorts(): number[] {
    return this.listeners.map((l) => (l.server.address() as AddressInfo).port);
  }

  private servers(): Server[] {
    return this.listeners.map((l) => l.server);
  }

  private createListener(config: ListenerConfig, limits: LimitsConfig): ClientListener {
    // Chosen once per listener: a plaintext listener's requests read this.ctx as before TLS existed.
    const ctx = config.tls === undefined ? () => this.ctx : () => this.secureCtx;
    return new ClientListener(config, limits, {
      request: (req, res) => {
        // A response whose headers went out before the gateway started draining said keep-alive:
        // its connection is closed right after it, not left idle for the client to reuse after
        // the address moved (the peer would reset that request).
        // During a handover that drops new connections (--handover-drop-syn) the address stays
        // until the open connections ended: the client's next request on it gets `Connection: close`
        // instead of a FIN it may cross (which resets that request).
        // An HTTP/2 connection gets a GOAWAY instead, after any of its streams ends (streamEnded):
        // its other streams finish.
        // (An HTTP/1.x parser's "HTTP/2.0" request line has no stream: refused as such later.)
        if ((req as unknown as Partial<Http2ServerRequest>).stream === undefined) {
          res.once('finish', () => { if (this.live.draining && !this.awaitingConnections) req.socket.end(); });
        }
        handleRequest(ctx(), req, res);
      },
      streamEnded: (session) => {
        if (this.live.draining && !this.awaitingConnections && !session.closed) session.close();
      },
      checkContinue: (req, res) => handleCheckContinue(ctx(), req, res),
      connection: (socket) => {
        this.lastConnectionAt = Date.now();
        this.openConnections++;
        socket.once('close', () => { this.openConnections--; });
      },
      clientError: (err, socket) => {
        const status = answerClientError(err, socket);
        if (status > 0) this.live.unrouted[((status / 100) | 0) - 1]!++;
      },
      upgrade: (req, socket, head) => {
        this.live.tunnels.add(socket);
        socket.once('close', () => this.live.tunnels.delete(socket));
        handleUpgrade(ctx(), req, socket, head);
      },
      tlsError: (err) => this.logger.debug({ msg: 'tls handshake failed', event: 'tls-error', code: err.code, error: err.message }),
    });
  }

  /** The admin listener's secret, for a caller in this process (the demo prints the dashboard's URL with it). */
  get adminToken(): string {
    return this.secret.token;
  }

  get adminAddress(): string {
    const a = this.admin.address() as AddressInfo;
    return formatHostPort(a.address, a.port);
  }

  /**
   * Applies a new config without dropping in-flight requests. Listener addresses and the
   * header size limit are fixed for the process's life; changing them is refused with the
   * reason, and the old config keeps serving.
   */
  reload(next: GatewayConfig): void {
    const problems: ConfigProblem[] = [];
    const same = (a: { host: string; port: number }, b: { host: string; port: number }) => a.host === b.host && a.port === b.port;
    const sameListener = (a: ListenerConfig, b: ListenerConfig | undefined) => b !== undefined && same(a, b) && (a.tls === undefined) === (b.tls === undefined);
    if (next.listen.length !== this.config.listen.length || next.listen.some((l, i) => !sameListener(l, this.config.listen[i]))) problems.push({ path: 'listen', message: 'cannot change on reload — restart the gateway to move the listener' });
    if (!same(next.admin, this.config.admin)) problems.push({ path: 'admin', message: 'cannot change on reload — restart the gateway to move the admin listener' });
    if (next.limits.maxHeaderSize !== this.config.limits.maxHeaderSize) problems.push({ path: 'limits.maxHeaderSize', message: 'cannot change on reload — restart the gateway' });
    for (const key of ['ttl', 'maxMetadataSize', 'maxInstances', 'maxInstancesPerPeer'] as const) {
      if (next.registry[key] !== this.config.registry[key]) problems.push({ path: `registry.${key}`, message: 'cannot change on reload — restart the gateway (registry.token can change)' });
    }
    for (const key of ['etcd', 'etcdPrefix', 'etcdUser', 'etcdPassword', 'etcdCa', 'etcdCert', 'etcdKey'] as const) {
      if (JSON.stringify(next.registry[key]) !== JSON.stringify(this.config.registry[key])) problems.push({ path: `registry.${key}`, message: 'cannot change on reload — restart the gateway' });
    }
    if (problems.length > 0) throw new ConfigError(problems);
    // A secret that changed (registry.token, or the file's content) takes effect for the next request.
    const secret = adminSecret(next.registry, next.admin);

    // The gateway's request steps follow the config too (log.access): new requests take them.
    this.accessLog = new AccessLog(next.log.access, this.logger);
    this.steps = this.gatewaySteps(next);
    for (const [name, svc] of next.services) {
      const existing = this.upstreams.get(name);
      if (existing) {
        existing.update(upstreamSettingsOf(this.withMembers(svc)));
        existing.setSteps(this.steps);
      } else {
        this.upstreams.set(name, new Upstream(upstreamSettingsOf(this.withMembers(svc)), this.steps, this.upstreamOptions()));
      }
    }
    for (const [name, upstream] of this.upstreams) {
      if (!next.services.has(name)) {
        this.upstreams.delete(name);
        void upstream.close(); // waits for its in-flight requests
      }
    }
    this.config = next;
    this.peers.configure(next.peers, next.virtualAddress);
    this.external?.follow(fromRegistry(next));
    this.secret = secret;
    this.bodyGuard.configure(bodyGuardOptions(next.limits));
    this.ctx = this.buildContext(next);
    this.secureCtx = { ...this.ctx, proto: 'https' };
    next.listen.forEach((l, i) => { if (l.tls) this.listeners[i]!.setTls(l.tls); });
    for (const l of this.listeners) l.setLimits(next.limits);
    this.admin.headersTimeout = next.limits.headersTimeout;
    this.logger.level = next.log.level;
    this.logger.info({ msg: 'reloaded', event: 'reload', services: [...next.services.keys()], routes: next.routes.length });
    this.feed.record('reload', `config reloaded: ${next.services.size} services, ${next.routes.length} routes`);
  }

  /**
   * Graceful stop: refuse new connections, tell keep-alive clients to close, wait for
   * in-flight requests up to drainTimeout, then close everything.
   *
   * With `release` (a pair behind a virtual address, docs/deployment.md) the address moves
   * first: /readyz says 503 and every response says `Connection: close` at once, idle
   * keep-alive connections are closed, and the listener keeps accepting until `release`
   * resolved (the address left) and no new connection came for HANDOVER_QUIET_MS — a connection
   * refused while clients still send here would be a failed request. Then the drain starts.
   */
  shutdown(release?: (listener: HandoverListener) => Promise<void>): Promise<void> {
    this.drained ??= this.drain(release);
    return this.drained;
  }

  private async drain(release?: (listener: HandoverListener) => Promise<void>): Promise<void> {
    this.live.draining = true;
    if (release) {
      this.logger.info({ msg: 'releasing the address', event: 'release', inflight: this.live.inflight });
      this.releasing = true;
      await release({
        openConnections: () => this.openConnections,
        awaitConnections: (on) => { this.awaitingConnections = on; },
        closeIdleConnections: () => { for (const l of this.listeners) l.closeIdle(); },
      });
      this.awaitingConnections = false;
      this.releasing = false;
      await this.untilNoNewConnections();
    }
    const deadline = Date.now() + this.config.drainTimeout;
    // Membership stays as it is while the gateway drains: the upstreams are closing.
    this.registrySubscription.dispose();
    this.logger.info({ msg: 'draining', event: 'drain', inflight: this.live.inflight, drainTimeoutMs: this.config.drainTimeout });
    this.feed.record('drain', `gateway draining (${this.live.inflight} ${this.live.inflight === 1 ? 'request' : 'requests'} in flight)`);
    const closed = Promise.all(this.servers().map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const l of this.listeners) l.closeIdle();
    while ((this.live.inflight > 0 || this.live.tunnels.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      for (const l of this.listeners) l.closeIdle();
    }
    const abandoned = this.live.inflight;
    for (const l of this.listeners) l.closeAll();
    for (const t of this.live.tunnels) t.destroy();
    await closed;
    // Past the drain timeout nothing is waited for: an endpoint still streaming to a client
    // that was cut off must not hold the process open.
    await Promise.all([...this.upstreams.values()].map((u) => (abandoned > 0 ? u.destroy() : u.close())));
    await this.registry.close();
    await this.external?.close();
    await this.caches.close();
    this.bodyGuard.close();
    this.peers.close();
    this.feed.close();
    await new Promise<void>((resolve) => {
      this.admin.close(() => resolve());
      this.admin.closeAllConnections();
    });
    this.logger.info({ msg: 'stopped', abandoned });
  }

  /**
   * After the address left this host the peer takes it only after its VRRP skew time, and
   * clients keep sending to this host until they see the peer's gratuitous ARP: connections
   * still arrive here for a while (the address stays on lo, docs/deployment.md). The listener
   * stays open until none came for HANDOVER_QUIET_MS, or HANDOVER_QUIET_MAX_MS passed.
   */
  private async untilNoNewConnections(): Promise<void> {
    const start = Date.now();
    // Counted from the release at the earliest: on long-lived keep-alive connections nothing new
    // may have come for a while, but closing them sends their clients to connect again.
    // No closeIdleConnections() in this loop: a connection just accepted counts as idle until its
    // request arrives, and closing it then resets a request already on the wire. Every response
    // says `Connection: close` by now, so connections end by themselves.
    while (Date.now() - Math.max(this.lastConnectionAt, start) < HANDOVER_QUIET_MS && Date.now() - start < HANDOVER_QUIET_MAX_MS) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.logger.info({ msg: 'no new connections', event: 'handover-quiet', waitedMs: Date.now() - start });
  }

  /**
   * The access log first: it marks the client's exchange, which the cache answers directly on a
   * hit. The cache step is in the chains only while some route has a cache.
   */
  private gatewaySteps(config: GatewayConfig): Step[] {
    const steps = gatewaySteps(this.accessLog);
    return config.routes.some((r) => r.cache !== undefined && r.cache !== false) ? [...steps, routeCacheStep()] : steps;
  }

  private buildContext(config: GatewayConfig): ProxyContext {
    return {
      router: new Router(config.routes, this.upstreams, config.services, this.caches.configure(config.routes)),
      trusted: trustedProxyList(config.trustedProxies),
      trustAny: config.trustedProxies.length > 0,
      maxBodySize: config.limits.maxBodySize,
      maxHeaders: config.limits.maxHeaders,
      bodyGuard: this.bodyGuard,
      accessLog: this.accessLog,
      logger: this.logger,
      live: this.live,
      proto: 'http',
    };
  }

  /** Registered instances by service and state, for tandem_registry_instances. */
  private registeredCounts(): Array<{ service: string; state: string; count: number }> {
    const out: Array<{ service: string; state: string; count: number }> = [];
    for (const service of this.registry.serviceNames()) {
      const counts = new Map<string, number>();
      for (const inst of this.registry.snapshotNow(service).instances) counts.set(inst.state, (counts.get(inst.state) ?? 0) + 1);
      for (const [state, count] of counts) out.push({ service, state, count });
    }
    return out;
  }

  /** The JSON behind /admin/cluster. */
  cluster(): unknown {
    return {
      gateway: {
        version: VERSION,
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
        draining: this.live.draining,
        inflight: this.live.inflight,
        listen: this.listenAddress,
        listeners: this.listenUrls,
      },
      services: [...this.upstreams.values()].map((u) => ({
        name: u.name,
        balancer: u.settings.balancer,
        panic: u.inPanic,
        active: u.stats.active,
        concurrencyLimit: u.settings.concurrencyLimit,
        overloaded: u.stats.overloaded,
        ...u.retrySnapshot(),
        endpoints: u.snapshot(),
      })),
      registry: { instances: this.registry.size, revision: this.registry.currentRevision, services: this.registry.serviceNames() },
      gateways: this.peers.views(),
      routes: this.ctx.router.all.map((r) => ({ prefix: r.prefix, host: r.host ?? null, service: r.service, stripPrefix: r.stripPrefix, cache: r.cache !== undefined })),
      caches: [...this.caches.stats()].map(({ staleReasons, stale, ...c }) => ({ ...c, stale: Object.fromEntries(staleReasons.map((reason, i) => [reason, stale[i] ?? 0])) })),
    };
  }
}

/** The services whose members come from etcd: those the config gives no endpoints. */
function fromRegistry(config: GatewayConfig): string[] {
  return [...config.services.values()].filter((s) => s.endpoints.length === 0).map((s) => s.name);
}

function boundAddress(server: Server): HostPort {
  const a = server.address() as AddressInfo;
  return { host: a.address, port: a.port };
}

function bodyGuardOptions(limits: LimitsConfig): BodyGuardOptions {
  return { idleTimeout: limits.bodyTimeout, minRate: limits.minBodyRate, grace: limits.minBodyRateGrace };
}

function listen(server: Server, host: string, port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(new TandemError('TANDEM_ERR_LISTEN', `${what}: cannot bind ${formatHostPort(host, port)}: ${err.code ?? err.message}`, { cause: err }));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
