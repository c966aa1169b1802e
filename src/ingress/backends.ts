/**
 * The upstream backends of each universe: per base URL one UpstreamPool (upstream.ts: the hot path's
 * keep-alive connections, reused across requests) and one undici Pool for mirror copies only, picked
 * round-robin. A backend whose connections fail is taken out for a while and
 * then tried again, so one dead process does not fail a share of all requests.
 */
import { Pool } from 'undici';
import type { UniverseName } from './universe.js';
import { UpstreamPool } from './upstream.js';

export interface BackendTimeouts {
  /** Time to connect to a backend. */
  connectMs: number;
  /** Time from sending the request until the response headers arrive. */
  headersMs: number;
  /** Longest silence between two response body chunks. */
  bodyMs: number;
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
}

/** How long a backend is left out after a connection failure; doubles per failure up to the cap. */
const RETRY_BASE_MS = 250;
const RETRY_CAP_MS = 5_000;

export class BackendSet {
  private readonly lists: Record<UniverseName, Backend[]> = { old: [], new: [] };
  private readonly cursor: Record<UniverseName, number> = { old: 0, new: 0 };

  constructor(private readonly timeouts: BackendTimeouts) {}

  set(universe: UniverseName, urls: readonly string[]): void {
    const previous = new Map(this.lists[universe].map((b) => [b.url, b]));
    const next: Backend[] = [];
    for (const url of urls) {
      const kept = previous.get(url);
      if (kept) {
        previous.delete(url);
        next.push(kept);
        continue;
      }
      next.push(this.open(universe, url));
    }
    this.lists[universe] = next;
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
   * Next backend round-robin, skipping those marked down; when all are down the least recently failed
   * is tried anyway (a retry is better than a certain 502).
   */
  pick(universe: UniverseName): Backend | undefined {
    const list = this.lists[universe];
    const n = list.length;
    if (n === 0) return undefined;
    if (n === 1) return list[0];
    const now = performance.now();
    let fallback: Backend | undefined;
    for (let i = 0; i < n; i++) {
      const idx = (this.cursor[universe] + i) % n;
      const b = list[idx] as Backend;
      if (b.downUntil <= now) {
        this.cursor[universe] = idx + 1;
        return b;
      }
      if (fallback === undefined || b.downUntil < fallback.downUntil) fallback = b;
    }
    return fallback;
  }

  markFailed(b: Backend): void {
    b.consecutiveFailures++;
    const backoff = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (b.consecutiveFailures - 1));
    b.downUntil = performance.now() + backoff;
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
    if (parsed.protocol !== 'http:') throw new Error(`upstream ${url}: only http:// backends are supported`);
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
    return { universe, url, prefix, upstream, pool, downUntil: 0, consecutiveFailures: 0 };
  }
}
