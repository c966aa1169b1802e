/**
 * The driver's side of the ingress control endpoint (src/ingress/control-endpoint.ts): hold, drain,
 * release and state on one node, each call with its own deadline. A node that does not answer in
 * time is a node that did not acknowledge.
 */
import { DeadlineError, ImagoError, errorMessage } from '../errors.js';
import type { IngressNodeSpec } from '../plan/index.js';
import type { BackendHealth, MirrorSink } from '../ingress/index.js';

export interface NodeState {
  node?: string;
  epoch: number;
  route: 'old' | 'new';
  holding: boolean;
  held?: number;
  inFlight?: { old: number; new: number };
  /** The epoch of the node's last release (a hold at or below it is refused). */
  releasedEpoch?: number;
  /** The upstream URLs per universe the node has. */
  upstreams?: { old?: string[]; new?: string[] };
  /** Whether the node copies reads for runtime testing. */
  mirror?: boolean;
  /** Each backend per universe, and whether it is in rotation (health checks, connection failures). */
  backends?: { old?: BackendHealth[]; new?: BackendHealth[] };
}

export class IngressNode {
  constructor(readonly spec: IngressNodeSpec) {}

  get name(): string {
    return this.spec.name;
  }

  state(timeoutMs: number): Promise<NodeState> {
    return this.call<NodeState>('GET', '/v1/state', undefined, timeoutMs);
  }

  hold(epoch: number, timeoutMs: number): Promise<NodeState> {
    return this.call<NodeState>('POST', '/v1/hold', { epoch }, timeoutMs);
  }

  /** Resolves once no request is in flight at `universe` on this node. */
  async drain(universe: 'old' | 'new', timeoutMs: number): Promise<void> {
    // The node enforces the deadline itself; ours only covers a node that stopped answering.
    await this.call(
      'POST',
      '/v1/drain',
      { universe, timeoutMs: Math.max(1, Math.floor(timeoutMs)) },
      timeoutMs + 250,
    );
  }

  release(
    epoch: number,
    route: 'old' | 'new',
    timeoutMs: number,
  ): Promise<NodeState & { released?: number }> {
    return this.call('POST', '/v1/release', { epoch, route }, timeoutMs);
  }

  setUpstreams(
    epoch: number,
    universe: 'old' | 'new',
    urls: string[],
    timeoutMs: number,
  ): Promise<NodeState> {
    return this.call('POST', '/v1/upstreams', { epoch, universe, urls }, timeoutMs);
  }

  /** Mirroring on or off; with a sink, the node ships its copies to that runtime-test collector. */
  mirror(
    epoch: number,
    enabled: boolean,
    sink: MirrorSink | undefined,
    timeoutMs: number,
  ): Promise<NodeState> {
    return this.call('POST', '/v1/mirror', { epoch, enabled, ...(sink ? { sink } : {}) }, timeoutMs);
  }

  private async call<T>(method: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
    const what = `ingress node ${this.name}: ${method} ${path}`;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.spec.control), {
        method,
        headers: {
          authorization: `Bearer ${this.spec.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs))),
      });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') throw new DeadlineError(what, Math.floor(timeoutMs));
      throw new ImagoError(
        `${what} failed: ${causeOf(err)}`,
        this.spec.control,
        'is the ingress node running?',
      );
    }
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      // a non-JSON answer is reported with its status below
    }
    if (!res.ok) {
      const reason = typeof json.error === 'string' ? json.error : text.slice(0, 200);
      throw new ImagoError(
        `${what} answered ${res.status}: ${reason}`,
        this.spec.control,
        res.status === 401 ? 'check the node token in the plan' : undefined,
      );
    }
    return json as T;
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  return cause ? errorMessage(cause) : errorMessage(err);
}
