/**
 * The router: decides, for each request, whether it waits in the hold queue or goes now, and to which
 * universe. The route is read at dispatch time, in the same synchronous step that hands the request to
 * a backend pool, and changes only inside release(): so once release('new') returns, no request can
 * reach 'old' again, and held requests go to the route in force at release, in arrival order.
 */
import type { Socket } from 'node:net';
import type { Backend, BackendSet } from './backends.js';
import type { Classifier, RequestClass } from './classify.js';
import type { ClientRequest } from './client-request.js';
import { answerError } from './client-response.js';
import type { DrainTracker } from './drain.js';
import { forward, type ForwardOutcome } from './forward.js';
import { upstreamRequestHeaders } from './headers.js';
import { HoldQueue, type HoldLimits } from './hold-queue.js';
import { BodyCapture, ResponseCapture, type Mirror } from './mirror.js';
import { otherUniverse, type UniverseName } from './universe.js';
import { forwardUpgrade, refuseUpgrade } from './upgrade.js';

export interface RouterOptions {
  route: UniverseName;
  hold: HoldLimits;
  maxBodyBytes: number;
  /** Answer past the hold deadline or when the hold queue is full. */
  holdRefusal: { status: number; retryAfterS: number };
  upgradeConnectMs: number;
}

/** What the router reports after each request; metrics and tests subscribe to it. */
export interface RequestObserver {
  dispatched?(universe: UniverseName, req: ClientRequest): void;
  completed?(
    universe: UniverseName,
    cls: RequestClass,
    outcome: ForwardOutcome,
    status: number,
    ms: number,
  ): void;
  held?(waitedMs: number): void;
}

interface Pending {
  req: ClientRequest;
  expectContinue: boolean;
}

export class Router {
  private current: UniverseName;
  private isHolding = false;
  private readonly queue: HoldQueue<Pending>;
  readonly requests: Record<UniverseName, number> = { old: 0, new: 0 };
  readonly errors: Record<UniverseName, number> = { old: 0, new: 0 };
  readonly upgraded: Record<UniverseName, number> = { old: 0, new: 0 };
  observer: RequestObserver = {};
  /** Client sockets handed over for an upgrade (open or pending), closed at shutdown: the front end no longer tracks them. */
  private readonly upgradedSockets = new Set<Socket>();
  private mirrorInForce: Mirror | undefined;

  get mirror(): Mirror | undefined {
    return this.mirrorInForce;
  }

  /** The mirror in force; it learns from the drain tracker how long this node has had no request in flight. */
  set mirror(mirror: Mirror | undefined) {
    this.mirrorInForce = mirror;
    mirror?.watchIdle(() => this.drain.idleFor());
  }

  constructor(
    private readonly opts: RouterOptions,
    private readonly backends: BackendSet,
    private readonly drain: DrainTracker,
    private readonly classifier: Classifier,
  ) {
    this.current = opts.route;
    this.queue = new HoldQueue<Pending>(opts.hold, (p) => this.refuse(p.req));
    this.queue.onLeave = (ms) => this.observer.held?.(ms);
    // A shipping mirror ships in the node's quiet moments: they start when the last request ends.
    drain.onIdle = () => this.mirrorInForce?.nodeIdle();
  }

  route(): UniverseName {
    return this.current;
  }

  holding(): boolean {
    return this.isHolding;
  }

  heldCount(): number {
    return this.queue.size;
  }

  maxHoldMs(): number {
    return this.queue.maxHoldMs;
  }

  hold(): void {
    this.isHolding = true;
  }

  /**
   * Optionally switches the route, then dispatches the held requests in arrival order. Refuses (throws,
   * changing nothing) to switch to a universe without backends: the queue would only turn into 502s.
   */
  release(route?: UniverseName): { released: number } {
    const target = route ?? this.current;
    if (!this.backends.has(target)) {
      throw new Error(
        `cannot release to universe '${target}': it has no upstreams (call setUpstreams first)`,
      );
    }
    this.current = target;
    this.isHolding = false;
    const held = this.queue.drainAll();
    for (const p of held) {
      if (p.req.response.destroyed) continue;
      this.dispatch(p);
    }
    return { released: held.length };
  }

  /** At shutdown: whoever waits in the queue gets the refusal rather than a reset; tunnels are cut. */
  shutdown(): void {
    for (const p of this.queue.drainAll()) this.refuse(p.req);
    for (const s of this.upgradedSockets) s.destroy();
  }

  handle(req: ClientRequest, expectContinue: boolean): void {
    const declared = req.declaredLength;
    if (declared !== undefined && declared > this.opts.maxBodyBytes) {
      // Refused before reading: the connection closes, since the unread body would follow.
      answerError(req.response, 413, 'Payload Too Large', { close: true });
      return;
    }
    const p: Pending = { req, expectContinue };
    if (!this.isHolding) {
      this.dispatch(p);
      return;
    }
    // Bytes a held request pins: its declared body (unread, in socket buffers) plus its headers.
    const bytes = (declared ?? 0) + approxHeaderBytes(req);
    const entry = this.queue.push(p, bytes);
    if (typeof entry === 'string') {
      this.refuse(req);
      return;
    }
    const queue = this.queue;
    req.response.watcher = { clientClosed: () => queue.cancel(entry), clientDrained: () => undefined };
  }

  /**
   * Upgrade requests go to the universe in force and stay there for the connection's life. During a
   * hold they are refused with the hold answer: a client reconnecting a second later lands on the
   * universe chosen by then, which is simpler and safer than parking raw sockets.
   */
  handleUpgrade(req: ClientRequest, socket: Socket, head: Buffer): void {
    if (this.isHolding) {
      refuseUpgrade(
        socket,
        this.opts.holdRefusal.status,
        'Service Unavailable',
        `retry-after: ${this.opts.holdRefusal.retryAfterS}\r\n`,
      );
      return;
    }
    const universe = this.current;
    const backend = this.backends.pick(universe);
    if (backend === undefined) {
      this.errors[universe]++;
      refuseUpgrade(socket, 502, 'Bad Gateway');
      return;
    }
    this.requests[universe]++;
    // Tracked from the hand-over, not from the 101: shutdown must also cut one not answered yet.
    this.upgradedSockets.add(socket);
    socket.once('close', () => this.upgradedSockets.delete(socket));
    forwardUpgrade(req, socket, head, backend, { connectMs: this.opts.upgradeConnectMs }, (open) => {
      if (!open) return;
      this.upgraded[universe]++;
      socket.once('close', () => this.upgraded[universe]--);
    });
  }

  private refuse(req: ClientRequest): void {
    const { status, retryAfterS } = this.opts.holdRefusal;
    answerError(req.response, status, 'Service Unavailable: upgrade in progress, retry shortly', {
      headers: ['retry-after', String(retryAfterS)],
    });
  }

  private dispatch(p: Pending, tried?: Set<Backend>): void {
    const universe = this.current;
    const backend = this.backends.pick(universe);
    if (backend === undefined) {
      this.errors[universe]++;
      answerError(p.req.response, 502, `Bad Gateway: no upstream for universe '${universe}'`);
      return;
    }
    const { req } = p;
    const method = req.method;
    const cls = this.classifier.classify(method, req.url);
    if (p.expectContinue && tried === undefined) req.response.writeContinue();
    const headers = upstreamRequestHeaders(req.rawHeaders, { clientIp: req.remoteAddress, proto: 'http' });
    const declared = req.declaredLength;
    const body = req.body;

    // Mirror capture, only when mirroring: the fast path stays free of it.
    let tap: ResponseCapture | undefined;
    let requestBody: BodyCapture | undefined;
    const mirror = this.mirror;
    if (mirror?.enabled && tried === undefined) {
      if (
        cls === 'read' &&
        (body === null || (declared !== undefined && declared <= mirror.maxBodyBytes)) &&
        mirror.sampled()
      ) {
        tap = new ResponseCapture(mirror.maxResponseBytes);
        if (body !== null) {
          const reqCapture = new BodyCapture(mirror.maxBodyBytes);
          requestBody = reqCapture;
          body.tap = (chunk) => reqCapture.add(chunk);
        }
      } else {
        mirror.skip();
      }
    }

    const startedAt = performance.now();
    this.requests[universe]++;
    this.drain.begin(universe);
    this.observer.dispatched?.(universe, req);
    forward({
      req,
      backend,
      body,
      headers,
      tap,
      // Only bodyless requests are retried (a streamed body may already be partly consumed), and
      // forward() only asks when nothing reached the backend or the method is GET/HEAD/OPTIONS.
      retry:
        body === null
          ? () => {
              this.backends.markFailed(backend);
              // The route may have flipped since: then the retry goes where requests go now.
              if (this.current !== universe) {
                this.dispatch(p, new Set());
                return true;
              }
              const seen = tried ?? new Set<Backend>();
              seen.add(backend);
              if (seen.size >= this.backends.list(universe).length) return false;
              const next = this.backends.pick(universe);
              if (next === undefined || seen.has(next)) return false;
              this.dispatch(p, seen);
              return true;
            }
          : undefined,
      done: (outcome, info) => {
        this.drain.end(universe);
        if (outcome === 'ok') this.backends.markHealthy(backend);
        else if (info.connectFailed && outcome !== 'retried') this.backends.markFailed(backend);
        if (outcome === 'upstream-error') this.errors[universe]++;
        if (outcome === 'retried') return;
        this.observer.completed?.(universe, cls, outcome, info.status, performance.now() - startedAt);
        if (tap !== undefined && mirror !== undefined && outcome === 'ok') {
          mirror.enqueue({
            target: otherUniverse(universe),
            request: { method, url: req.url, headers, body: requestBody?.buffer() ?? Buffer.alloc(0) },
            primary: {
              universe,
              status: tap.status,
              headers: tap.headers,
              body: tap.body.buffer(),
              truncated: tap.body.truncated,
            },
            primaryDoneAt: Date.now(),
          });
        }
      },
    });
  }
}

function approxHeaderBytes(req: ClientRequest): number {
  let n = req.url.length + 16;
  for (const h of req.rawHeaders) n += h.length + 2;
  return n;
}
