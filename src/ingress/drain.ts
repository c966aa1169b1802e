/**
 * Drain tracking: how many requests each universe is still answering. A request counts from the moment
 * it is dispatched until its upstream response has been completely received (or failed), because the
 * app commits before it responds: "drained" therefore means every write the universe accepted is
 * committed. The switchover waits on `drained()` before fencing the old database.
 */
import type { UniverseName } from './universe.js';

interface Waiter {
  resolve(): void;
}

export class DrainTracker {
  private readonly counts: Record<UniverseName, number> = { old: 0, new: 0 };
  private readonly waiters: Record<UniverseName, Set<Waiter>> = { old: new Set(), new: new Set() };
  /** performance.now() when the node last had nothing in flight to either universe. */
  private idleSince = 0;
  /** Called when the node's last request in flight to either universe ends (the mirror's quiet). */
  onIdle?: () => void;

  begin(universe: UniverseName): void {
    this.counts[universe]++;
  }

  end(universe: UniverseName): void {
    const left = --this.counts[universe];
    if (left === 0 && this.counts.old + this.counts.new === 0) {
      this.idleSince = performance.now();
      this.onIdle?.();
    }
    if (left === 0 && this.waiters[universe].size > 0) {
      const waiting = [...this.waiters[universe]];
      this.waiters[universe].clear();
      for (const w of waiting) w.resolve();
    }
  }

  inFlight(universe: UniverseName): number {
    return this.counts[universe];
  }

  /** How long (ms) nothing has been in flight to either universe; 0 while something is. */
  idleFor(): number {
    return this.counts.old + this.counts.new > 0 ? 0 : performance.now() - this.idleSince;
  }

  /** Resolves when `universe` has nothing in flight; rejects naming the count when the deadline passes. */
  drained(universe: UniverseName, timeoutMs: number): Promise<void> {
    if (this.counts[universe] === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters[universe].delete(waiter);
        reject(
          new Error(
            `drain of universe '${universe}' timed out after ${timeoutMs} ms with ${this.counts[universe]} request(s) still in flight`,
          ),
        );
      }, timeoutMs);
      this.waiters[universe].add(waiter);
    });
  }
}
