/**
 * The hold queue: while a switchover is in PREPARE, new requests wait here (their bodies unread) until
 * release dispatches them in arrival order. Bounded in count, bytes and wait, because a switchover
 * that stalls must not turn into unbounded memory or clients hanging forever: past the limits a
 * request gets the configured refusal (503 + Retry-After) instead.
 */

export interface HoldLimits {
  maxRequests: number;
  maxBytes: number;
  maxWaitMs: number;
}

export const DEFAULT_HOLD_LIMITS: HoldLimits = {
  maxRequests: 10_000,
  maxBytes: 64 * 1024 * 1024,
  maxWaitMs: 10_000,
};

export interface HeldEntry<T> {
  readonly item: T;
  readonly bytes: number;
  readonly heldAt: number;
  /** False once released, expired or cancelled (the client went away). */
  live: boolean;
}

export type HoldRefusal = 'count' | 'bytes';

export class HoldQueue<T> {
  private entries: HeldEntry<T>[] = [];
  private head = 0;
  private count = 0;
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private longestMs = 0;
  /** Told how long each request waited when it leaves the queue (metrics). */
  onLeave?: (waitedMs: number) => void;

  constructor(
    private limits: HoldLimits,
    /** Called for an entry whose wait passed maxWaitMs; it has already left the queue. */
    private readonly onExpire: (item: T, waitedMs: number) => void,
  ) {}

  setLimits(limits: HoldLimits): void {
    this.limits = limits;
  }

  get size(): number {
    return this.count;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /** The longest any request has waited here so far (released or expired). */
  get maxHoldMs(): number {
    return this.longestMs;
  }

  /** Adds `item`, or says which limit refuses it. */
  push(item: T, bytes: number): HeldEntry<T> | HoldRefusal {
    if (this.count >= this.limits.maxRequests) return 'count';
    if (this.count > 0 && this.bytes + bytes > this.limits.maxBytes) return 'bytes';
    const entry: HeldEntry<T> = { item, bytes, heldAt: performance.now(), live: true };
    this.entries.push(entry);
    this.count++;
    this.bytes += bytes;
    this.armTimer();
    return entry;
  }

  /** Removes an entry whose client went away, so it no longer counts against the limits. */
  cancel(entry: HeldEntry<T>): void {
    if (!entry.live) return;
    this.leave(entry);
  }

  /** Empties the queue in arrival order, for release. */
  drainAll(): T[] {
    const out: T[] = [];
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i] as HeldEntry<T>;
      if (!entry.live) continue;
      this.leave(entry);
      out.push(entry.item);
    }
    this.entries = [];
    this.head = 0;
    this.disarmTimer();
    return out;
  }

  private leave(entry: HeldEntry<T>): void {
    entry.live = false;
    this.count--;
    this.bytes -= entry.bytes;
    const waited = performance.now() - entry.heldAt;
    if (waited > this.longestMs) this.longestMs = waited;
    this.onLeave?.(waited);
  }

  /** One timer for the oldest live entry: arrival order is deadline order, so that is enough. */
  private armTimer(): void {
    if (this.timer !== undefined) return;
    const first = this.firstLive();
    if (first === undefined) return;
    const due = Math.max(0, first.heldAt + this.limits.maxWaitMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.expire();
    }, due);
  }

  private disarmTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private firstLive(): HeldEntry<T> | undefined {
    while (this.head < this.entries.length) {
      const entry = this.entries[this.head] as HeldEntry<T>;
      if (entry.live) return entry;
      this.head++;
    }
    this.entries = [];
    this.head = 0;
    return undefined;
  }

  private expire(): void {
    const now = performance.now();
    for (let entry = this.firstLive(); entry !== undefined; entry = this.firstLive()) {
      const waited = now - entry.heldAt;
      // 1 ms slack: timers fire on a millisecond clock, performance.now() is finer.
      if (waited + 1 < this.limits.maxWaitMs) break;
      this.leave(entry);
      this.head++;
      this.onExpire(entry.item, waited);
    }
    this.armTimer();
  }
}
