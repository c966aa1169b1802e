/**
 * The consistency barrier: a read mirrored to the new universe waits until conversion has applied
 * everything the old database had committed when the old universe answered it. The proof is a fence
 * taken after that answer: the stream has applied a transaction ending past the old WAL position read
 * then (Converter.readFence), or a marker written then (Converter.catchUp, when the old database is
 * idle): either way it has applied every transaction committed before.
 *
 * Fences are coalesced: one serves every read waiting when it starts, one runs at a time, and they
 * start at most every `intervalMs` while reads wait, so the old database sees a few cheap queries per
 * second (a marker only when nothing else moves the stream), not one per read.
 */

/** What the barrier needs from conversion (Converter satisfies it). */
export interface CatchUpSource {
  catchUp(timeoutMs: number): Promise<unknown>;
  /** The same guarantee for reads, cheaper when the old database is being written (Converter.readFence). */
  readFence?(timeoutMs: number): Promise<unknown>;
}

export interface BarrierOptions {
  /** Least time between two markers while reads wait. Default 50 ms. */
  intervalMs?: number;
  /** Deadline of one catch-up. Default 5 000 ms. */
  timeoutMs?: number;
  /** Clock in ms, the same one as the answer times passed to wait(). Default Date.now. */
  now?: () => number;
}

export interface BarrierStats {
  /** Catch-ups started (fence markers written). */
  markers: number;
  /** Reads let through. */
  passed: number;
  /** Reads whose catch-up failed or passed its deadline. */
  failed: number;
  /** Most reads served by one marker. */
  maxBatch: number;
}

interface Round {
  startedAt: number;
  done: Promise<void>;
}

export class ConsistencyBarrier {
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly running: Round[] = [];
  private next: { waiters: number; done: Promise<void>; start: () => void } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastStart = -Infinity;
  private closed = false;
  private readonly counts: BarrierStats = { markers: 0, passed: 0, failed: 0, maxBatch: 0 };

  constructor(
    private readonly source: CatchUpSource,
    options: BarrierOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 50;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Resolves once a catch-up started after `answeredAt` has completed; rejects when it fails. A
   * catch-up already under way serves only if it started strictly later (same-millisecond starts may
   * have preceded the answer); otherwise the read joins the next one.
   */
  async wait(answeredAt: number): Promise<void> {
    if (this.closed) throw new Error('the consistency barrier is closed');
    const covering = this.running.find((r) => r.startedAt > answeredAt);
    const done = covering ? covering.done : this.join();
    try {
      await done;
      this.counts.passed++;
    } catch (err) {
      this.counts.failed++;
      throw err;
    }
  }

  stats(): BarrierStats {
    return { ...this.counts };
  }

  /** Fails reads waiting for a marker not yet written; markers under way finish on their own deadline. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.next?.start();
  }

  private join(): Promise<void> {
    if (!this.next) {
      let start!: () => void;
      const done = new Promise<void>((resolve, reject) => {
        start = () => {
          this.next = undefined;
          clearTimeout(this.timer);
          this.timer = undefined;
          if (this.closed) return reject(new Error('the consistency barrier is closed'));
          resolve(this.startRound());
        };
      });
      // The waiters' promise may reject before anyone awaits it (close): keep that from going unhandled.
      done.catch(() => {});
      this.next = { waiters: 0, done, start };
      this.schedule();
    }
    this.next.waiters++;
    this.counts.maxBatch = Math.max(this.counts.maxBatch, this.next.waiters);
    return this.next.done;
  }

  /** Starts the next round once the interval has passed and no catch-up is under way. */
  private schedule(): void {
    if (!this.next || this.timer) return;
    const delay = Math.max(0, this.lastStart + this.intervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // One catch-up at a time: markers apply in order anyway, and the old database's connection
      // runs one query at a time. The round that ends calls schedule() again.
      if (this.running.length === 0 || this.closed) this.next?.start();
    }, delay);
  }

  private startRound(): Promise<void> {
    const startedAt = this.now();
    this.lastStart = startedAt;
    this.counts.markers++;
    const fence = this.source.readFence
      ? this.source.readFence(this.timeoutMs)
      : this.source.catchUp(this.timeoutMs);
    const done = fence.then(() => undefined);
    const round: Round = { startedAt, done };
    this.running.push(round);
    const forget = () => {
      this.running.splice(this.running.indexOf(round), 1);
      this.schedule();
    };
    done.then(forget, forget);
    return done;
  }
}
