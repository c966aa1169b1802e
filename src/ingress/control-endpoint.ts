/**
 * The control endpoint: a small HTTP API on its own loopback port through which a switchover driver
 * holds, flips, releases and mirrors on one or several ingress nodes. Every transition carries an epoch
 * number; a node refuses one older than the last it accepted (409), so a delayed or replayed command
 * from an earlier attempt cannot undo a later decision, and refuses a hold at or below the epoch of its
 * last release (a hold delayed past the release of its attempt must not hold the node for good). A
 * transition is checked whole first (400/409 naming what is wrong: nothing applied, nothing saved),
 * then applied, then the resulting state (upstreams included) is saved to the control store, and only
 * then acknowledged, so the store never holds what the node refused and a restarted node resumes
 * from the last acknowledged state. Requests need `Authorization: Bearer <token>`; transitions are
 * applied one at a time.
 */
import { listen } from '../universe/listen.js';
import { timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { errorMessage, ImagoError } from '../errors.js';
import type { ControlState, ControlStore } from './control-store.js';
import type { MirrorSink } from './mirror-sink.js';
import type { UniverseName } from './universe.js';
import { checkUpstreamUrls } from './upstream-url.js';

/**
 * What the endpoint drives; implemented by the ingress (synchronously) and by a cluster primary
 * (asynchronously: a transition resolves once every worker has applied it).
 */
export interface ControlTarget {
  route(): UniverseName;
  holding(): boolean;
  hold(): void | Promise<void>;
  release(route?: UniverseName): { released: number } | Promise<{ released: number }>;
  hasUpstreams(universe: UniverseName): boolean;
  /** The upstream URLs a universe has now (persisted with the state). */
  upstreamUrls(universe: UniverseName): string[];
  setUpstreams(universe: UniverseName, urls: string[]): void | Promise<void>;
  mirroring(): boolean;
  /** With a sink, copies go to that runtime-test collector; throws when there is no mirror at all. */
  setMirror(enabled: boolean, sink?: MirrorSink): void | Promise<void>;
  drained(universe: UniverseName, timeoutMs: number): Promise<void>;
  snapshot(): Record<string, unknown> | Promise<Record<string, unknown>>;
  metrics(): Promise<{ contentType: string; text: string }>;
}

export interface ControlEndpointOptions {
  token: string;
  /** Loopback by default; anything else is refused unless explicitly allowed. */
  host?: string;
  port?: number;
  store: ControlStore;
  /** Node identity reported in acknowledgements (several nodes answer one driver). */
  nodeId?: string;
}

export interface ControlEndpoint {
  readonly port: number;
  readonly url: string;
  epoch(): number;
  close(): Promise<void>;
}

const universe = z.enum(['old', 'new']);
const epochField = z.number().int().nonnegative();
const bodies = {
  hold: z.object({ epoch: epochField }),
  release: z.object({ epoch: epochField, route: universe.optional() }),
  mirror: z.object({
    epoch: epochField,
    enabled: z.boolean(),
    /** A runtime-test collector; not persisted (its token lives as long as the driver that sent it). */
    sink: z
      .object({
        url: z.string().url(),
        token: z.string().min(16),
        sampleRate: z.number().positive().max(1).optional(),
      })
      .optional(),
  }),
  // Each URL is checked by checkUpstreamUrls, which says what is wrong with it.
  upstreams: z.object({ epoch: epochField, universe, urls: z.array(z.string()).max(1_000) }),
  drain: z.object({ universe, timeoutMs: z.number().int().positive().max(600_000) }),
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }

  /** A user error as an answer with `status`, keeping what is at fault and the hint. */
  static of(status: number, err: ImagoError): HttpError {
    return new HttpError(status, err.message, {
      subject: err.subject,
      ...(err.hint ? { hint: err.hint } : {}),
    });
  }
}

const MAX_CONTROL_BODY = 64 * 1024;

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_CONTROL_BODY) throw new HttpError(413, 'control request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new HttpError(
      400,
      `invalid body: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  return r.data;
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost';
}

export async function startControlEndpoint(
  target: ControlTarget,
  opts: ControlEndpointOptions,
  initial: { epoch: number; releasedEpoch?: number },
): Promise<ControlEndpoint> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`control endpoint must listen on loopback, not ${host}`);
  if (opts.token.length < 16) throw new Error('control token must be at least 16 characters');
  const expected = Buffer.from(`Bearer ${opts.token}`);
  let epoch = initial.epoch;
  let releasedEpoch = initial.releasedEpoch ?? 0;
  // Transitions run one at a time, in the order they arrived.
  let chain: Promise<unknown> = Promise.resolve();

  const authorized = (req: IncomingMessage): boolean => {
    const given = Buffer.from(req.headers.authorization ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  };

  const current = (): ControlState => ({
    epoch,
    route: target.route(),
    holding: target.holding(),
    mirror: target.mirroring(),
    releasedEpoch,
    upstreams: { old: target.upstreamUrls('old'), new: target.upstreamUrls('new') },
  });

  /**
   * Checks the epoch and the transition (`next` throws to refuse it), applies it, saves the state the
   * node is now in, acknowledges. A refused transition changes nothing; one applied but not saved
   * is not acknowledged (500): the driver retries it (the same epoch is accepted again) or aborts.
   */
  const transition = (
    given: number,
    next: (s: ControlState) => ControlState,
    apply: () => Record<string, unknown> | Promise<Record<string, unknown>>,
  ): Promise<Record<string, unknown>> => {
    const run = chain.then(async () => {
      if (given < epoch)
        throw new HttpError(409, `stale epoch ${given}: this node is at epoch ${epoch}`, { epoch });
      const state = next(current());
      let result: Record<string, unknown>;
      try {
        result = await apply();
      } catch (err) {
        // What the node cannot do in its configuration (a mirror it does not have): the caller's to fix.
        throw err instanceof ImagoError ? HttpError.of(409, err) : err;
      }
      epoch = given;
      releasedEpoch = state.releasedEpoch ?? releasedEpoch;
      try {
        await opts.store.save(current());
      } catch (err) {
        throw new HttpError(500, `transition at epoch ${given} applied but not saved: ${errorMessage(err)}`, {
          epoch,
        });
      }
      return { ok: true, node: opts.nodeId, ...current(), ...result };
    });
    chain = run.catch(() => undefined);
    return run;
  };

  const handle = async (req: IncomingMessage): Promise<{ status: number; body: unknown; type?: string }> => {
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/v1/state') {
      return { status: 200, body: { node: opts.nodeId, ...current(), ...(await target.snapshot()) } };
    }
    if (method === 'GET' && path === '/metrics') {
      const m = await target.metrics();
      return { status: 200, body: m.text, type: m.contentType };
    }
    if (method !== 'POST') throw new HttpError(404, `no route ${method} ${path}`);
    const json = await readJson(req);
    switch (path) {
      case '/v1/hold': {
        const b = parse(bodies.hold, json);
        return {
          status: 200,
          body: await transition(
            b.epoch,
            (s) => {
              // A hold delayed past the release of its own attempt would hold this node for good.
              if (b.epoch <= releasedEpoch)
                throw new HttpError(409, `epoch ${b.epoch} was already released on this node`, {
                  epoch,
                  releasedEpoch,
                });
              return { ...s, holding: true };
            },
            async () => (await target.hold(), {}),
          ),
        };
      }
      case '/v1/release': {
        const b = parse(bodies.release, json);
        const route = b.route ?? target.route();
        if (!target.hasUpstreams(route))
          throw new HttpError(409, `universe '${route}' has no upstreams on this node`);
        return {
          status: 200,
          body: await transition(
            b.epoch,
            (s) => ({ ...s, route, holding: false, releasedEpoch: Math.max(releasedEpoch, b.epoch) }),
            () => target.release(route),
          ),
        };
      }
      case '/v1/mirror': {
        const b = parse(bodies.mirror, json);
        return {
          status: 200,
          body: await transition(
            b.epoch,
            (s) => ({ ...s, mirror: b.enabled }),
            async () => (await target.setMirror(b.enabled, b.sink), {}),
          ),
        };
      }
      case '/v1/upstreams': {
        const b = parse(bodies.upstreams, json);
        try {
          checkUpstreamUrls(b.universe, b.urls);
        } catch (err) {
          throw err instanceof ImagoError ? HttpError.of(400, err) : err;
        }
        return {
          status: 200,
          body: await transition(
            b.epoch,
            (s) => {
              // Every request would fail: the driver empties a universe only once nothing routes to it.
              if (b.urls.length === 0 && s.route === b.universe)
                throw new HttpError(
                  409,
                  `universe '${b.universe}' is the route: it cannot be left without upstreams`,
                  { route: s.route },
                );
              return { ...s, upstreams: { ...s.upstreams, [b.universe]: b.urls } };
            },
            async () => (await target.setUpstreams(b.universe, b.urls), {}),
          ),
        };
      }
      case '/v1/drain': {
        const b = parse(bodies.drain, json);
        try {
          await target.drained(b.universe, b.timeoutMs);
        } catch (err) {
          throw new HttpError(504, err instanceof Error ? err.message : String(err));
        }
        return { status: 200, body: { ok: true, node: opts.nodeId, universe: b.universe, inFlight: 0 } };
      }
      default:
        throw new HttpError(404, `no route ${method} ${path}`);
    }
  };

  const send = (res: ServerResponse, status: number, body: unknown, type = 'application/json'): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const server = http.createServer((req, res) => {
    if (!authorized(req)) {
      req.resume();
      send(res, 401, { error: 'missing or wrong bearer token' });
      return;
    }
    handle(req).then(
      (r) => send(res, r.status, r.body, r.type),
      (err: unknown) => {
        if (err instanceof HttpError) send(res, err.status, { error: err.message, ...err.extra });
        else send(res, 500, { error: err instanceof Error ? err.message : String(err) });
      },
    );
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 10 * 60_000;
  const { port, url } = await listen(server, opts.port ?? 0, host);
  return {
    port,
    url,
    epoch: () => epoch,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
