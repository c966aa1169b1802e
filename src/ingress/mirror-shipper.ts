/**
 * The shipping side of a mirror: the reads an ingress node hands to a remote runtime test wait here
 * and go in batches, once the node is quiet. Shipping right after an answer (encoding, the POST)
 * competed with the client reading that answer, on the CPUs the node shares with the old universe
 * and the clients: most of the p50 cost of mirroring in the runtime-test bench (docs/benchmarks.md).
 */
import { waitUntil } from '../deadline.js';
import type { ShippedExchange, ShippingMirror } from './mirror.js';

/** At most this many exchanges, and this many bytes of bodies, go in one shipment. */
export const SHIP_BATCH = 64;
export const SHIP_BATCH_BYTES = 2 * 1024 * 1024;

export interface ShipperOptions {
  ship: ShippingMirror['ship'];
  /** Shipments on the wire at once. */
  concurrency: number;
  /** Deadline of one shipment. */
  timeoutMs: number;
  /** Ships once the node has had no request in flight for this long (ms)… */
  quietMs: number;
  /** …or once the oldest exchange waiting has waited this long (ms). */
  maxWaitMs: number;
}

interface Waiting {
  exchange: ShippedExchange;
  /** performance.now() when it was handed over. */
  readyAt: number;
}

export class Shipper {
  private readonly queue: Waiting[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  /** Shipments on the wire. */
  active = 0;
  /** Exchanges shipped (each counted once, whatever became of its shipment) and failed. */
  readonly counts = { sent: 0, failed: 0 };
  /**
   * How long (ms) the node has had no request in flight, 0 while one is (the router's). Without it
   * exchanges go on the next timer tick.
   */
  idleFor?: () => number;
  onChange?: () => void;

  constructor(private readonly o: ShipperOptions) {}

  /** Exchanges waiting to be shipped. */
  get waiting(): number {
    return this.queue.length;
  }

  add(exchange: ShippedExchange): void {
    this.queue.push({ exchange, readyAt: performance.now() });
    // Never in the request's own turn: what one turn hands over goes together, after it.
    this.arm(0);
  }

  /** The node's last request in flight has ended: the quiet period starts now. */
  nodeIdle(): void {
    const oldest = this.queue[0];
    if (oldest === undefined || this.flushing) return;
    // The timer armed may be the deadline (later), never sooner than this: the deadline is kept.
    const deadline = this.o.maxWaitMs - (performance.now() - oldest.readyAt);
    clearTimeout(this.timer);
    this.timer = undefined;
    this.arm(Math.min(this.o.quietMs, deadline));
  }

  /**
   * Ships everything waiting, quiet or not, and waits (at most `timeoutMs`) until it is on the
   * other side; before the sink is replaced or the node closes, so that nothing waiting is lost.
   */
  async flush(timeoutMs: number): Promise<void> {
    if (this.queue.length === 0 && this.active === 0) return;
    this.flushing = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.arm(0);
    try {
      await waitUntil(
        'the mirror to ship what waits',
        async () => (this.queue.length === 0 && this.active === 0 ? true : undefined),
        { timeoutMs, intervalMs: 5 },
      );
    } catch {
      // Bounded on purpose: what is still waiting then is given up (the caller is replacing or closing).
    } finally {
      this.flushing = false;
    }
  }

  /** One timer at a time: a later reason to come back waits for it (nodeIdle() replaces it). */
  private arm(delayMs: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pass();
      },
      Math.max(1, Math.ceil(delayMs)),
    );
    this.timer.unref();
  }

  /** Ships one batch if it is time to, and comes back (in another turn) for the rest. */
  private pass(): void {
    const oldest = this.queue[0];
    if (oldest === undefined || this.active >= this.o.concurrency) return;
    const waited = performance.now() - oldest.readyAt;
    const idle = this.idleFor?.() ?? Infinity;
    // A full batch goes at once: waiting would only grow the queue toward maxQueue.
    const full = this.queue.length >= SHIP_BATCH;
    if (!this.flushing && !full && idle < this.o.quietMs && waited < this.o.maxWaitMs) {
      // While a request is in flight only the deadline is armed: nodeIdle() comes back sooner.
      const quietLeft = idle === 0 ? Infinity : this.o.quietMs - idle;
      this.arm(Math.min(quietLeft, this.o.maxWaitMs - waited));
      return;
    }
    const batch = this.takeBatch();
    this.onChange?.();
    this.active++;
    void this.ship(batch).finally(() => {
      this.active--;
      this.onChange?.();
      this.arm(0);
    });
    if (this.queue.length > 0) this.arm(0);
  }

  /** The oldest exchanges, up to SHIP_BATCH of them and SHIP_BATCH_BYTES of bodies (at least one). */
  private takeBatch(): ShippedExchange[] {
    const batch: ShippedExchange[] = [];
    let bytes = 0;
    while (batch.length < SHIP_BATCH && this.queue.length > 0) {
      const next = (this.queue[0] as Waiting).exchange;
      const size = next.request.body.length + next.primary.body.length;
      if (batch.length > 0 && bytes + size > SHIP_BATCH_BYTES) break;
      batch.push(next);
      this.queue.shift();
      bytes += size;
    }
    return batch;
  }

  private async ship(batch: ShippedExchange[]): Promise<void> {
    this.counts.sent += batch.length;
    try {
      await this.o.ship(batch, AbortSignal.timeout(this.o.timeoutMs));
    } catch {
      this.counts.failed += batch.length;
    }
  }
}
