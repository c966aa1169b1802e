/**
 * Opportunistic conversion: the bulk copy slows down or pauses while the old universe is busy and
 * catches up when it is idle (gh-ost's throttler, for a copy into another server). Signals are
 * checked at most every `intervalMs`; while any says "busy", the copy waits between batches. The
 * change stream is never throttled: holding it back would only grow the lag and the retained WAL.
 */
import { execFile } from 'node:child_process';
import pg from 'pg';

/** Returns why the old universe is busy, or undefined when the copy may go on. */
export type ThrottleSignal = () => Promise<string | undefined>;

export interface ThrottleState {
  throttled: boolean;
  reason?: string;
  /** Total time the copy has waited. */
  waitedMs: number;
}

export class Throttler {
  private state: ThrottleState = { throttled: false, waitedMs: 0 };
  private lastCheck = 0;

  constructor(
    private readonly signals: ThrottleSignal[],
    private readonly options: {
      intervalMs?: number;
      maxWaitMs?: number;
      onChange?: (s: ThrottleState) => void;
    } = {},
  ) {}

  status(): ThrottleState {
    return { ...this.state };
  }

  /**
   * Resolves when no signal says busy. A pause longer than maxWaitMs (default 10 minutes) lets one
   * batch through, so that a signal that never clears slows the copy to a crawl instead of hanging it.
   */
  async wait(): Promise<void> {
    const interval = this.options.intervalMs ?? 500;
    const started = performance.now();
    for (;;) {
      if (performance.now() - this.lastCheck >= interval || this.state.throttled) {
        this.lastCheck = performance.now();
        this.set(await this.check());
      }
      if (!this.state.throttled) return;
      if (performance.now() - started >= (this.options.maxWaitMs ?? 600_000)) return;
      await new Promise((resolve) => setTimeout(resolve, interval));
      this.state.waitedMs += interval;
    }
  }

  private async check(): Promise<string | undefined> {
    for (const signal of this.signals) {
      const reason = await signal().catch(
        (err: unknown) => `throttle check failed: ${err instanceof Error ? err.message : String(err)}`,
      );
      if (reason) return reason;
    }
    return undefined;
  }

  private set(reason: string | undefined): void {
    const throttled = reason !== undefined;
    const changed = throttled !== this.state.throttled || reason !== this.state.reason;
    this.state = { throttled, waitedMs: this.state.waitedMs, ...(reason ? { reason } : {}) };
    if (changed) this.options.onChange?.(this.status());
  }
}

/** Busy while the old universe's live p99 latency (as the ingress sees it) exceeds `maxMs`. */
export function latencySignal(p99Ms: () => number | undefined, maxMs: number): ThrottleSignal {
  return async () => {
    const p99 = p99Ms();
    return p99 !== undefined && p99 > maxMs
      ? `old universe p99 latency ${p99.toFixed(1)} ms > ${maxMs} ms`
      : undefined;
  };
}

/** Busy while more than `max` sessions of the old database are running a query (Imago's excluded). */
export function activeSessionsSignal(url: string, max: number): ThrottleSignal {
  return async () => {
    const client = new pg.Client({ connectionString: url, application_name: 'imago-throttle' });
    client.on('error', () => {});
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
            AND application_name NOT LIKE 'imago%' AND datname = current_database()`,
      );
      const n = rows[0]?.n ?? 0;
      return n > max ? `${n} active sessions on the old database > ${max}` : undefined;
    } finally {
      await client.end().catch(() => {});
    }
  };
}

/** The user's own check: a command that exits 0 when the copy may go on (like gh-ost's throttle query). */
export function commandSignal(command: string, timeoutMs = 5000): ThrottleSignal {
  return () =>
    new Promise((resolve) => {
      execFile('sh', ['-c', command], { timeout: timeoutMs }, (err, stdout) => {
        if (!err) return resolve(undefined);
        resolve(`throttle command said busy: ${stdout.toString().trim() || err.message}`);
      });
    });
}
