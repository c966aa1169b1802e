/**
 * Imago's ingress: the reverse proxy all live traffic passes through during an upgrade. It owns routing
 * to the old or new universe, the hold queue, drain tracking, mirroring and its control endpoint; it is
 * where switchover atomicity is enforced. It must never crash on what a client or backend does (those
 * become 4xx/5xx answers) and never send one request to both universes.
 *
 * This file is the in-process API and wires the parts: router (route + hold decision), hold-queue,
 * drain, backends, forward (hot path), headers, body-limit, upgrade, classify, mirror, metrics,
 * control-endpoint and control-store; front-end and client-connection are its HTTP/1.1 server.
 */
import type { Socket } from 'node:net';
import { ImagoError } from '../errors.js';
import { httpHost } from '../universe/listen.js';
import { BackendSet, type Balance, type BackendHealth } from './backends.js';
import { Classifier, type ClassRule, type RequestClass } from './classify.js';
import type { ClientRequest } from './client-request.js';
import { startControlEndpoint, type ControlEndpoint } from './control-endpoint.js';
import { FileControlStore, MemoryControlStore, type ControlStore } from './control-store.js';
import { DrainTracker } from './drain.js';
import { FrontEnd } from './front-end.js';
import { checkHealthCheckOptions, HealthChecker, type HealthCheckOptions } from './health-check.js';
import { DEFAULT_HOLD_LIMITS } from './hold-queue.js';
import { IngressMetrics } from './metrics.js';
import { Mirror, type MirrorLimits, type MirrorOptions, type MirrorStats } from './mirror.js';
import { shipTo, type MirrorSink, type SinkClient } from './mirror-sink.js';
import { Router } from './router.js';
import { UNIVERSES, type UniverseName } from './universe.js';

export type { UniverseName } from './universe.js';
export type { ClassRule, RequestClass } from './classify.js';
export type { ClientRequest } from './client-request.js';
export type {
  MirrorExchange,
  MirrorOptions,
  MirrorLimits,
  MirrorStats,
  CapturedResponse,
  ShippedExchange,
} from './mirror.js';
export type { MirrorSink } from './mirror-sink.js';
export { decodeExchanges, EXCHANGES_PATH } from './mirror-sink.js';
export { Mirror } from './mirror.js';
export { BackendSet, BALANCES, type Balance, type BackendHealth } from './backends.js';
export type { HealthCheckOptions } from './health-check.js';
export type { ControlState, ControlStore } from './control-store.js';
export { FileControlStore, MemoryControlStore } from './control-store.js';
export { startIngressCluster, type IngressCluster } from './cluster.js';

export interface IngressOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Base URLs per universe, e.g. { old: ['http://127.0.0.1:4001'] }. */
  upstreams: Partial<Record<UniverseName, string[]>>;
  /** Where requests go initially. */
  route: UniverseName;
  /** Start in hold (new requests queue until release), as a restarted node that was holding does. */
  holding?: boolean;
  /**
   * Processes serving the port. startIngress() is one process and accepts only 1 (the default);
   * startIngressCluster() forks this many workers (default: the number of cores) under a primary
   * that owns the route/hold state and the control endpoint.
   */
  workers?: number;
  /** Hold queue limits; defaults 10000 requests, 64 MiB, 10000 ms. Past maxWaitMs → 503 + Retry-After: 1. */
  hold?: { maxRequests?: number; maxBytes?: number; maxWaitMs?: number };
  limits?: IngressLimits;
  /** How a backend is chosen among a universe's backends that are up. Default 'round-robin'. */
  balance?: Balance;
  /** Active health checks of every backend (off when absent); failing backends leave the rotation. */
  healthCheck?: HealthCheckOptions;
  /** Called as each request is handed to a backend, in dispatch order (tests, tracing). */
  onDispatch?: (universe: UniverseName, req: ClientRequest) => void;
  /** Read/write classification rules (first match wins); default by method. */
  classify?: ClassRule[];
  /** Mirror configuration; mirroring itself is switched on with mirror(true) or the control endpoint. */
  mirror?: MirrorOptions;
  /** Limits of a shipping mirror set up later through the control endpoint (a runtime-test sink). */
  mirrorLimits?: MirrorLimits;
  /** Control endpoint on its own loopback port; absent = in-process control only. */
  control?: {
    token: string;
    port?: number;
    /** Where the epoch and route survive a restart: a ControlStore or a JSON file path. */
    store?: ControlStore | string;
    nodeId?: string;
  };
}

export interface IngressLimits {
  /** Largest request body accepted (413 beyond). Default 10 MiB. */
  maxBodyBytes?: number;
  /** Time a client has to send the request headers (slowloris guard). Default 10 000 ms. */
  headersTimeoutMs?: number;
  /** Time a client has to send the whole request, body included. Default 60 000 ms. */
  requestTimeoutMs?: number;
  /** Idle keep-alive connection timeout on the client side. Default 5 000 ms. */
  idleTimeoutMs?: number;
  /**
   * Time a client has to take what it is sent: once its socket is full it must drain within this, else
   * the connection is cut (a client that never reads would pin its backend connection). Default 60 000 ms.
   */
  sendTimeoutMs?: number;
  /** Time to connect to a backend (then 502/504). Default 5 000 ms. */
  upstreamConnectTimeoutMs?: number;
  /** Time for a backend's response headers to arrive (then 504). Default 60 000 ms. */
  upstreamHeadersTimeoutMs?: number;
  /** Longest silence inside a backend's response body (then the client connection is cut). Default 60 000 ms. */
  upstreamBodyTimeoutMs?: number;
}

export interface Ingress {
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  route(): UniverseName;
  /** Sets the backends of a universe (the new universe starts later than the ingress). */
  setUpstreams(universe: UniverseName, urls: string[]): void;
  /** From now on new requests queue (bodies not read yet). */
  hold(): void;
  /** Optionally switches the route, then dispatches the queue in arrival order to the route in force. */
  release(route?: UniverseName): { released: number };
  holding(): boolean;
  /** Requests dispatched to `universe` whose upstream response is not yet fully received. */
  inFlight(universe: UniverseName): number;
  /** Resolves when inFlight(universe) reaches 0; rejects with an Error naming the count on deadline. */
  drained(universe: UniverseName, timeoutMs: number): Promise<void>;
  stats(): {
    requests: Record<UniverseName, number>;
    errors: Record<UniverseName, number>;
    held: number;
    maxHoldMs: number;
    /** Each backend and whether it is in rotation now (not failed, passively or by its health check). */
    backends: Record<UniverseName, BackendHealth[]>;
  };
  /** Stops listening, closes upstream pools and open sockets. */
  close(): Promise<void>;
  /**
   * Switches mirroring on or off. With a sink, copies are shipped to that runtime-test collector;
   * without one, the configured mirror is used (rejects when there is none).
   */
  mirror(enabled: boolean, sink?: MirrorSink): Promise<void>;
  mirrorStats(): MirrorStats | undefined;
  /** The read/write class a request would get. */
  classify(method: string, url: string): RequestClass;
  /** Prometheus text exposition of this ingress's metrics. */
  metrics(): Promise<string>;
  /** The same metrics as prom-client JSON (what a cluster primary aggregates across workers). */
  metricsJson(): Promise<unknown[]>;
  /** Upgraded (WebSocket) connections open now, per universe they were accepted by. */
  upgraded(): Record<UniverseName, number>;
  /** Serves a client connection accepted elsewhere (by a cluster primary). */
  adopt(socket: Socket): void;
  /** The control endpoint, when configured. */
  readonly control: { url: string; port: number; epoch(): number } | undefined;
}

/** How long a mirror may take to ship what it holds before its sink is replaced or the node closes. */
const SINK_FLUSH_MS = 2_000;

function sameSink(a: MirrorSink, b: MirrorSink | undefined): boolean {
  return b !== undefined && a.url === b.url && a.token === b.token && a.sampleRate === b.sampleRate;
}

/**
 * Starts a single-process ingress. It listens on `options.port` itself, unless `listens` is false: a
 * cluster worker serves the connections its primary accepted and hands it (adopt), on that port.
 */
export async function startIngress(options: IngressOptions, listens = true): Promise<Ingress> {
  if (options.workers !== undefined && options.workers !== 1) {
    throw new Error(
      `startIngress runs one process (workers: 1); use startIngressCluster for workers: ${options.workers}`,
    );
  }
  if (options.healthCheck) checkHealthCheckOptions(options.healthCheck);
  const limits = options.limits ?? {};
  const backends = new BackendSet(
    {
      connectMs: limits.upstreamConnectTimeoutMs ?? 5_000,
      headersMs: limits.upstreamHeadersTimeoutMs ?? 60_000,
      bodyMs: limits.upstreamBodyTimeoutMs ?? 60_000,
    },
    options.balance,
  );
  for (const u of UNIVERSES) {
    const urls = options.upstreams[u];
    if (urls) backends.set(u, urls);
  }
  const drain = new DrainTracker();
  const store =
    typeof options.control?.store === 'string'
      ? new FileControlStore(options.control.store)
      : (options.control?.store ?? new MemoryControlStore());
  // A restarted node resumes the last acknowledged state instead of trusting its command line.
  const restored = options.control ? await store.load() : undefined;
  for (const u of UNIVERSES) {
    const urls = restored?.upstreams?.[u];
    if (urls && urls.length > 0) backends.set(u, urls);
  }
  const classifier = new Classifier(options.classify);
  const router = new Router(
    {
      route: restored?.route ?? options.route,
      hold: {
        maxRequests: options.hold?.maxRequests ?? DEFAULT_HOLD_LIMITS.maxRequests,
        maxBytes: options.hold?.maxBytes ?? DEFAULT_HOLD_LIMITS.maxBytes,
        maxWaitMs: options.hold?.maxWaitMs ?? DEFAULT_HOLD_LIMITS.maxWaitMs,
      },
      maxBodyBytes: limits.maxBodyBytes ?? 10 * 1024 * 1024,
      holdRefusal: { status: 503, retryAfterS: 1 },
      upgradeConnectMs: limits.upstreamConnectTimeoutMs ?? 5_000,
    },
    backends,
    drain,
    classifier,
  );
  if (restored?.holding ?? options.holding) router.hold();
  if (options.mirror) {
    router.mirror = new Mirror(options.mirror, backends);
    router.mirror.enabled = restored?.mirror ?? false;
  }
  const metrics = new IngressMetrics({ router, drain, backends, mirror: () => router.mirror });
  if (router.mirror) router.mirror.onChange = (_q, dropped) => dropped && metrics.mirrorDropped.inc();
  router.observer = {
    dispatched: options.onDispatch,
    completed: (u, cls, outcome, status, ms) => metrics.completed(u, cls, outcome, status, ms),
    held: (ms) => metrics.holdDuration.observe(ms / 1000),
  };
  let sinkClient: SinkClient | undefined;
  let sinkInForce: MirrorSink | undefined;
  /**
   * With a sink, copies are shipped there (replacing an earlier, different sink: what its mirror still
   * holds is shipped first); else the configured mirror.
   */
  const setMirror = async (enabled: boolean, sink?: MirrorSink): Promise<void> => {
    if (sink && !sameSink(sink, sinkInForce)) {
      const previous = { client: sinkClient, mirror: router.mirror };
      sinkClient = shipTo(sink);
      sinkInForce = sink;
      const limits = { ...options.mirrorLimits, ...(sink.sampleRate ? { sampleRate: sink.sampleRate } : {}) };
      router.mirror = new Mirror({ ...limits, ship: sinkClient.ship }, backends);
      router.mirror.onChange = (_q, dropped) => dropped && metrics.mirrorDropped.inc();
      // In the background: this is a control call, and the old collector may be slow or gone.
      void (async () => {
        await previous.mirror?.flush(SINK_FLUSH_MS);
        await previous.client?.close().catch(() => {});
      })();
    }
    if (!router.mirror)
      throw new ImagoError(
        'mirroring is not configured on this node',
        'mirror',
        'give a runtime-test sink (POST /v1/mirror with sink), or start the node with options.mirror',
      );
    router.mirror.enabled = enabled;
  };

  // Our own HTTP/1.1 server on llhttp rather than node:http: see client-connection.ts. 100 Continue is
  // answered by the router at dispatch time, which keeps held requests' bodies unread.
  const front = new FrontEnd(
    {
      headersMs: limits.headersTimeoutMs ?? 10_000,
      requestMs: limits.requestTimeoutMs ?? 60_000,
      idleMs: limits.idleTimeoutMs ?? 5_000,
      sendMs: limits.sendTimeoutMs ?? 60_000,
      maxBodyBytes: limits.maxBodyBytes ?? 10 * 1024 * 1024,
    },
    {
      request: (req, expectContinue) => router.handle(req, expectContinue),
      upgrade: (req, socket, head) => router.handleUpgrade(req, socket, head),
    },
  );
  const host = options.host ?? '127.0.0.1';
  const { port, url } = listens
    ? await front.listen(options.port ?? 0, host)
    : { port: options.port ?? 0, url: `http://${httpHost(host)}:${options.port ?? 0}` };
  const checker = options.healthCheck && new HealthChecker(backends, options.healthCheck);
  let closing: Promise<void> | undefined;

  let control: ControlEndpoint | undefined;
  if (options.control) {
    try {
      control = await startControlEndpoint(
        {
          route: () => router.route(),
          holding: () => router.holding(),
          hold: () => router.hold(),
          release: (route) => router.release(route),
          hasUpstreams: (u) => backends.has(u),
          upstreamUrls: (u) => backends.list(u).map((b) => b.url),
          setUpstreams: (u, urls) => backends.set(u, urls),
          mirroring: () => router.mirror?.enabled ?? false,
          setMirror,
          drained: (u, ms) => drain.drained(u, ms),
          snapshot: () => ({
            port,
            inFlight: { old: drain.inFlight('old'), new: drain.inFlight('new') },
            held: router.heldCount(),
            requests: { ...router.requests },
            errors: { ...router.errors },
            mirrorStats: router.mirror?.stats(),
            backends: backends.health(),
          }),
          metrics: async () => ({ contentType: metrics.contentType, text: await metrics.text() }),
        },
        { token: options.control.token, port: options.control.port, store, nodeId: options.control.nodeId },
        { epoch: restored?.epoch ?? 0, releasedEpoch: restored?.releasedEpoch },
      );
    } catch (err) {
      checker?.close();
      await front.close();
      await backends.close();
      throw err;
    }
  }

  return {
    port,
    url,
    route: () => router.route(),
    setUpstreams: (universe, urls) => backends.set(universe, urls),
    hold: () => router.hold(),
    release: (route) => router.release(route),
    holding: () => router.holding(),
    inFlight: (universe) => drain.inFlight(universe),
    drained: (universe, timeoutMs) => drain.drained(universe, timeoutMs),
    stats: () => ({
      requests: { ...router.requests },
      errors: { ...router.errors },
      held: router.heldCount(),
      maxHoldMs: router.maxHoldMs(),
      backends: backends.health(),
    }),
    mirror: (enabled, sink) => setMirror(enabled, sink),
    mirrorStats: () => router.mirror?.stats(),
    classify: (method, url) => classifier.classify(method.toUpperCase(), url),
    metrics: () => metrics.text(),
    metricsJson: () => metrics.registry.getMetricsAsJSON(),
    upgraded: () => ({ ...router.upgraded }),
    adopt: (socket) => front.adopt(socket),
    control: control && { url: control.url, port: control.port, epoch: () => control.epoch() },
    close: () =>
      (closing ??= (async () => {
        await control?.close();
        checker?.close();
        router.shutdown();
        if (router.mirror) router.mirror.enabled = false;
        const closed = front.close();
        await backends.close();
        await closed;
        // After the last request has ended: what those mirrored is shipped too.
        await router.mirror?.flush(SINK_FLUSH_MS);
        await sinkClient?.close().catch(() => {});
      })()),
  };
}
