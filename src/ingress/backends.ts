/**
 * The upstream backends of each universe: per base URL one UpstreamPool (upstream.ts: the hot path's
 * keep-alive connections, reused across requests) and one undici Pool for mirror copies and health
 * checks, picked round-robin or least-busy. A backend whose connections fail is taken out for a while
 * and then tried again, so one dead process does not fail a share of all requests; one failing its
 * active health check (health-check.ts) stays out until a check passes.
 */
import { Pool } from 'undici';
import { ImagoError } from '../errors.js';
import type { UniverseName } from './universe.js';
import { UpstreamPool } from './upstream.js';
import { checkUpstreamUrls } from './upstream-url.js';

export interface BackendTimeouts {
  /** Time to connect to a backend. */
  connectMs: number;
  /** Time from sending the request until the response headers arrive. */
  headersMs: number;
  /** Longest silence between two response body chunks. */
  bodyMs: number;
}

/**
 * How a backend is chosen among those up. 'least-busy' sends each request where the fewest exchanges
 * are under way, so one slow backend (a long query, a GC pause) is not handed an equal share of the
 * requests that would queue behind it.
 */
export type Balance = 'round-robin' | 'least-busy';

export const BALANCES: readonly Balance[] = ['round-robin', 'least-busy'];

/** Throws naming the value at fault (options may come from plain JavaScript or over IPC). */
export function checkBalance(balance: string | undefined): void {
  if (balance !== undefined && !(BALANCES as readonly string[]).includes(balance))
    throw new ImagoError(
      `balance must be ${BALANCES.map((b) => `'${b}'`).join(' or ')}, not '${balance}'`,
      'balance',
      'leave it out for round-robin',
    );
}

/** A backend as reported in the node's state: `up` = in rotation now. */
export interface BackendHealth {
  url: string;
  up: boolean;
}

export interface Backend {
  readonly universe: UniverseName;
  readonly url: string;
  /** Path prefix of the base URL ('' when none), prepended to every forwarded path. */
  readonly prefix: string;
  /** Proxied requests (the hot path). */
  readonly upstream: UpstreamPool;
  /** Mirror copies (undici: buffered request/response, not on the hot path). */
  readonly pool: Pool;
  /** Until this time (performance.now()) the backend is skipped after a connection failure. */
  downUntil: number;
  consecutiveFailures: number;
  /** performance.now() of the last connection failure (-Infinity before any). */
  failedAt: number;
  /** The last active health check failed: out of rotation until one passes. */
  checkFailed: boolean;
}

function isUp(b: Backend, now: number): boolean {
  return !b.checkFailed && b.downUntil <= now;
}

/** How long a backend is left out after a connection failure; doubles per failure up to the cap. */
const RETRY_BASE_MS = 250;
const RETRY_CAP_MS = 5_000;

export class BackendSet {
  private readonly lists: Record<UniverseName, Backend[]> = { old: [], new: [] };
  private readonly cursor: Record<UniverseName, number> = { old: 0, new: 0 };

  /** Called for each backend set() adds (the health checker checks it at once). */
  onAdded: ((b: Backend) => void) | undefined = undefined;

  constructor(
    private readonly timeouts: BackendTimeouts,
    private readonly balance: Balance = 'round-robin',
  ) {
    checkBalance(balance);
  }

  /** Replaces a universe's backends; throws (changing nothing) naming a URL that cannot be one. */
  set(universe: UniverseName, urls: readonly string[]): void {
    checkUpstreamUrls(universe, urls);
    const previous = new Map(this.lists[universe].map((b) => [b.url, b]));
    const next: Backend[] = [];
    const added: Backend[] = [];
    for (const url of urls) {
      const kept = previous.get(url);
      if (kept) {
        previous.delete(url);
        next.push(kept);
        continue;
      }
      const opened = this.open(universe, url);
      next.push(opened);
      added.push(opened);
    }
    this.lists[universe] = next;
    for (const b of added) this.onAdded?.(b);
    // Removed backends finish what they have in flight; close() waits for that.
    for (const gone of previous.values()) {
      gone.upstream.closeWhenIdle();
      void gone.pool.close().catch(() => undefined);
    }
  }

  has(universe: UniverseName): boolean {
    return this.lists[universe].length > 0;
  }

  list(universe: UniverseName): readonly Backend[] {
    return this.lists[universe];
  }

  /**
   * The next backend among those up: round-robin, or least-busy with ties going to the first from the
   * round-robin cursor (equal backends still alternate). When all are down the least recently failed
   * is tried anyway (a retry is better than a certain 502); one down only by its health check has no
   * back-off left, so it comes first.
   */
  pick(universe: UniverseName): Backend | undefined {
    const list = this.lists[universe];
    const n = list.length;
    if (n === 0) return undefined;
    if (n === 1) return list[0];
    const now = performance.now();
    const start = this.cursor[universe];
    const leastBusy = this.balance === 'least-busy';
    let chosen = -1;
    let chosenBusy = Infinity;
    let fallback = -1;
    let fallbackRetryAt = Infinity;
    for (let i = 0; i < n; i++) {
      const idx = (start + i) % n;
      const b = list[idx] as Backend;
      if (isUp(b, now)) {
        if (!leastBusy) {
          chosen = idx;
          break;
        }
        const busy = b.upstream.busy;
        if (busy < chosenBusy) {
          chosen = idx;
          chosenBusy = busy;
          if (busy === 0) break;
        }
      } else {
        // Down only by its health check: its back-off is over, so it ties with the others like it.
        const retryAt = Math.max(b.downUntil, now);
        if (retryAt < fallbackRetryAt) {
          fallback = idx;
          fallbackRetryAt = retryAt;
        }
      }
    }
    if (chosen === -1) chosen = fallback;
    // Moved past the fallback too: backends down only by their health check (tied) take
    // turns rather than one of them receiving everything.
    this.cursor[universe] = (chosen + 1) % n;
    return list[chosen];
  }

  /**
   * A health check's verdict: a pass also ends a passive back-off, since the backend answers again —
   * unless a connection failed after the check was sent (`startedAt`): that failure is newer news.
   */
  markChecked(b: Backend, passed: boolean, startedAt: number): void {
    b.checkFailed = !passed;
    if (passed && b.failedAt < startedAt) {
      b.consecutiveFailures = 0;
      b.downUntil = 0;
    }
  }

  /** Whether `b` is still one of the backends (not replaced by set() or closed). */
  current(b: Backend): boolean {
    return this.lists[b.universe].includes(b);
  }

  health(): Record<UniverseName, BackendHealth[]> {
    const now = performance.now();
    const of = (list: Backend[]): BackendHealth[] => list.map((b) => ({ url: b.url, up: isUp(b, now) }));
    return { old: of(this.lists.old), new: of(this.lists.new) };
  }

  markFailed(b: Backend): void {
    b.failedAt = performance.now();
    b.consecutiveFailures++;
    const backoff = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (b.consecutiveFailures - 1));
    b.downUntil = b.failedAt + backoff;
  }

  markHealthy(b: Backend): void {
    if (b.consecutiveFailures !== 0) {
      b.consecutiveFailures = 0;
      b.downUntil = 0;
    }
  }

  async close(): Promise<void> {
    const all = [...this.lists.old, ...this.lists.new];
    this.lists.old = [];
    this.lists.new = [];
    for (const b of all) b.upstream.close();
    await Promise.all(all.map((b) => b.pool.destroy().catch(() => undefined)));
  }

  private open(universe: UniverseName, url: string): Backend {
    const parsed = new URL(url);
    const prefix = parsed.pathname === '/' ? '' : parsed.pathname.replace(/\/$/, '');
    const pool = new Pool(parsed.origin, {
      connections: 256,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      connectTimeout: this.timeouts.connectMs,
      headersTimeout: this.timeouts.headersMs,
      bodyTimeout: this.timeouts.bodyMs,
    });
    const upstream = new UpstreamPool(parsed.hostname.replace(/^\[|\]$/g, ''), Number(parsed.port || 80), {
      connectMs: this.timeouts.connectMs,
      headersMs: this.timeouts.headersMs,
      bodyMs: this.timeouts.bodyMs,
    });
    return {
      universe,
      url,
      prefix,
      upstream,
      pool,
      downUntil: 0,
      consecutiveFailures: 0,
      failedAt: -Infinity,
      checkFailed: false,
    };
  }
}
