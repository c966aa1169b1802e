/**
 * Active health checks: every `intervalMs`, `GET path` to each backend of both universes on a
 * connection of their own (an undici Client per backend: neither the hot path's connections nor the
 * mirror's pool, where heavy mirroring would queue a check into its timeout). A non-2xx answer,
 * a timeout or a connection error takes the backend out of rotation until a later check passes; a
 * pass puts it back at once. Passive failures (backends.ts) work as before, and catch what happens
 * between two checks; checks catch a backend that accepts connections but cannot serve (its database
 * gone, a 503 while it starts), which passive failures never see.
 */
import { Client } from 'undici';
import { ImagoError } from '../errors.js';
import type { Backend, BackendSet } from './backends.js';
import { UNIVERSES } from './universe.js';

export interface HealthCheckOptions {
  /** Path asked of every backend (after the backend URL's own path prefix), e.g. '/healthz'. */
  path: string;
  /** Time between two checks of a backend. Default 2 000 ms. */
  intervalMs?: number;
  /** A check not answered (headers and body) within this fails. Default 1 000 ms. */
  timeoutMs?: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Throws naming the field at fault; called before anything starts (also by a cluster primary). */
export function checkHealthCheckOptions(opts: HealthCheckOptions): void {
  if (typeof opts.path !== 'string' || !opts.path.startsWith('/'))
    throw new ImagoError(
      `healthCheck.path must start with '/', not ${JSON.stringify(opts.path)}`,
      'healthCheck.path',
      "give the backend's health endpoint as a path, e.g. /healthz",
    );
  for (const [name, ms] of [
    ['intervalMs', opts.intervalMs],
    ['timeoutMs', opts.timeoutMs],
  ] as const)
    // Node's timers take at most 2^31 - 1 ms (longer ones fire at once).
    if (ms !== undefined && !(Number.isInteger(ms) && ms >= 1 && ms <= MAX_TIMER_MS))
      throw new ImagoError(
        `healthCheck.${name} must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}, not ${ms}`,
        `healthCheck.${name}`,
        'a few seconds is usual',
      );
}

export class HealthChecker {
  /** Backends with a check under way: a slow backend is never checked twice at once. */
  private readonly running = new Set<Backend>();
  /** Each backend's check connection. */
  private readonly clients = new Map<Backend, Client>();
  private readonly timer: NodeJS.Timeout;
  private readonly timeoutMs: number;
  private closed = false;

  constructor(
    private readonly backends: BackendSet,
    private readonly opts: HealthCheckOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 1_000;
    // A backend added later (setUpstreams) is checked at once rather than at the next round.
    backends.onAdded = (b) => this.check(b);
    this.timer = setInterval(() => this.round(), opts.intervalMs ?? 2_000);
    this.timer.unref();
    this.round();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.backends.onAdded = undefined;
    for (const client of this.clients.values()) void client.destroy().catch(() => {});
    this.clients.clear();
  }

  /** Backends replaced by setUpstreams are not in the lists any more: no longer checked, connection closed. */
  private round(): void {
    for (const [b, client] of this.clients)
      if (!this.backends.current(b) && !this.running.has(b)) {
        this.clients.delete(b);
        void client.close().catch(() => {});
      }
    for (const u of UNIVERSES) for (const b of this.backends.list(u)) this.check(b);
  }

  private check(b: Backend): void {
    if (this.closed || this.running.has(b)) return;
    this.running.add(b);
    const startedAt = performance.now();
    void this.passes(b).then((passed) => {
      this.running.delete(b);
      // A verdict on a backend removed meanwhile (or after close) is forgotten with it.
      if (!this.closed && this.backends.current(b)) this.backends.markChecked(b, passed, startedAt);
    });
  }

  private async passes(b: Backend): Promise<boolean> {
    try {
      let client = this.clients.get(b);
      if (!client) this.clients.set(b, (client = new Client(new URL(b.url).origin, { pipelining: 1 })));
      const res = await client.request({
        method: 'GET',
        path: b.prefix + this.opts.path,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 300;
    } catch {
      return false;
    }
  }
}
