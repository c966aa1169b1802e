/**
 * Mirror mode: eligible requests (reads, bodies under a size limit) are copied to the other universe
 * after the client has been answered, and both answers go to a comparator (runtime testing). The
 * client never waits for the mirror and never sees its failures: copies go through a bounded queue,
 * and when it is full the copy is dropped and counted, not delayed.
 *
 * A shipping mirror sends nothing to the other universe itself: it hands the request and the
 * primary's answer to a remote runtime test (the driver's, mirror-sink.ts), which waits for its
 * consistency barrier, sends the copy and compares. The barrier needs the conversion, which runs in
 * the driver, not at the edge.
 */
import { withDeadline } from '../deadline.js';
import type { BackendSet } from './backends.js';
import type { ResponseTap } from './forward.js';
import { Shipper } from './mirror-shipper.js';
import type { UniverseName } from './universe.js';

export interface CapturedResponse {
  universe: UniverseName;
  status: number;
  /** Flat [name, value, …] as received (hop-by-hop already removed for the primary). */
  headers: string[];
  body: Buffer;
  /** True when the body passed maxResponseBytes and was cut for comparison. */
  truncated: boolean;
}

export interface MirrorExchange {
  request: { method: string; url: string; headers: string[]; body: Buffer };
  primary: CapturedResponse;
  mirror: CapturedResponse | { universe: UniverseName; error: string };
  /** Date.now() when the primary answer was complete (what a consistency barrier waits to cover). */
  primaryDoneAt: number;
  /** From sending the copy to the end of its answer (not its wait for the barrier or a slot). */
  mirrorMs?: number;
  /** Why the copy was not sent: the barrier failed or passed the copy's deadline (then `mirror` is an error). */
  barrierError?: string;
}

/** What a shipping mirror hands over: everything but the copy's answer. */
export type ShippedExchange = Omit<MirrorExchange, 'mirror'>;

export interface ComparingMirror {
  /** Receives each pair of answers; its errors are counted, never propagated. */
  compare: (exchange: MirrorExchange) => void | Promise<void>;
  /** Awaited before the copy is sent, e.g. until conversion has applied what old had committed. */
  barrier?: (exchange: Pick<MirrorExchange, 'request' | 'primaryDoneAt'>) => Promise<void>;
  /**
   * Whether this read is compared at all (e.g. the runtime test's budget per endpoint), asked on
   * arrival, before the barrier; a read refused is counted as unsampled and costs nothing more.
   */
  admit?: (exchange: Pick<MirrorExchange, 'request' | 'primary'>) => boolean;
}

export interface ShippingMirror {
  /** Hands a batch of exchanges to a remote runtime test; a rejection counts each as a failed copy. */
  ship: (exchanges: ShippedExchange[], signal: AbortSignal) => Promise<void>;
}

export type MirrorOptions = (ComparingMirror | ShippingMirror) & MirrorLimits;

export interface MirrorLimits {
  /**
   * Share of eligible reads copied (every n-th, n = 1/rate), decided before anything is captured so
   * that the others cost nothing. Default 1.
   */
  sampleRate?: number;
  /** Largest request body copied; larger requests are not mirrored. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Largest response body kept for comparison (each side). Default 1 MiB. */
  maxResponseBytes?: number;
  /** Copies waiting to be sent; beyond, copies are dropped and counted. Default 1000. */
  maxQueue?: number;
  /**
   * Copies in flight at once (a shipping mirror's: shipments, each a batch of reads). Default 16.
   * Reads waiting for the barrier do not hold a slot: they wait together (one fence serves them all)
   * and take a slot once it has passed.
   */
  concurrency?: number;
  /** Deadline for one copy, barrier included. Default 10 000 ms. */
  timeoutMs?: number;
  /**
   * A shipping mirror ships once the node has had no request in flight for this long (ms), so that
   * its work (encoding, the POST) does not compete with the clients' requests and their reading of
   * the answers, on machines the node shares with the old universe and the clients. Default 2.
   */
  shipQuietMs?: number;
  /** …and at the latest this long (ms) after the oldest exchange waiting was ready. Default 50. */
  shipMaxWaitMs?: number;
}

export interface MirrorStats {
  enabled: boolean;
  /** Eligible reads left out by sampleRate, or refused by the comparator's `admit`. */
  unsampled: number;
  queued: number;
  inFlight: number;
  sent: number;
  dropped: number;
  skipped: number;
  failed: number;
  compared: number;
  compareErrors: number;
}

interface Job {
  target: UniverseName;
  request: MirrorExchange['request'];
  primary: CapturedResponse;
  primaryDoneAt: number;
}

/** A job in the mirror: with a barrier, its deadline covers barrier and copy, and it notes how the barrier went. */
interface Queued extends Job {
  /** performance.now() by which barrier and copy must be done. */
  deadlineAt?: number;
  barrierError?: string;
}

/** Accumulates a body up to a limit, remembering whether it was cut. */
export class BodyCapture {
  readonly chunks: Buffer[] = [];
  size = 0;
  truncated = false;
  constructor(private readonly limit: number) {}
  add(chunk: Buffer): void {
    if (this.truncated) return;
    if (this.size + chunk.length > this.limit) {
      this.truncated = true;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }
  buffer(): Buffer {
    return this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.size);
  }
}

/** Keeps the primary's answer, as the client receives it, for comparison. */
export class ResponseCapture implements ResponseTap {
  status = 0;
  headers: string[] = [];
  readonly body: BodyCapture;
  constructor(limit: number) {
    this.body = new BodyCapture(limit);
  }
  onHeaders(status: number, headers: string[]): void {
    this.status = status;
    this.headers = headers;
  }
  onData(chunk: Buffer): void {
    this.body.add(chunk);
  }
}

export class Mirror {
  enabled = false;
  /** Ready to be compared: past their barrier. */
  private readonly queue: Queued[] = [];
  /** Waiting for their barrier (counted in `queued`, holding no slot). */
  private atBarrier = 0;
  private active = 0;
  private readonly counts = {
    sent: 0,
    dropped: 0,
    skipped: 0,
    unsampled: 0,
    failed: 0,
    compared: 0,
    compareErrors: 0,
  };
  private readonly sampleEvery: number;
  private eligible = 0;
  readonly maxBodyBytes: number;
  readonly maxResponseBytes: number;
  private readonly maxQueue: number;
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  /** Notified on queue length changes and drops (metrics). */
  onChange?: (queued: number, dropped: boolean) => void;
  /** A shipping mirror's batches (mirror-shipper.ts). */
  private readonly shipper: Shipper | undefined;

  constructor(
    private readonly opts: MirrorOptions,
    private readonly backends: BackendSet,
  ) {
    this.maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
    this.maxResponseBytes = opts.maxResponseBytes ?? 1024 * 1024;
    this.maxQueue = opts.maxQueue ?? 1000;
    this.concurrency = opts.concurrency ?? 16;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    if ('ship' in opts) {
      this.shipper = new Shipper({
        ship: opts.ship,
        concurrency: this.concurrency,
        timeoutMs: this.timeoutMs,
        quietMs: Math.max(0, opts.shipQuietMs ?? 2),
        maxWaitMs: Math.max(0, opts.shipMaxWaitMs ?? 50),
      });
      this.shipper.onChange = () => this.onChange?.(this.waiting(), false);
    }
    const rate = Math.min(1, Math.max(1e-6, opts.sampleRate ?? 1));
    this.sampleEvery = Math.max(1, Math.round(1 / rate));
  }

  /** Whether this eligible read is copied (sampleRate); counted when it is not. */
  sampled(): boolean {
    if (this.sampleEvery === 1 || ++this.eligible % this.sampleEvery === 0) return true;
    this.counts.unsampled++;
    return false;
  }

  skip(): void {
    this.counts.skipped++;
  }

  /**
   * Queues a copy; never blocks. Returns false when it was dropped (or skipped), true when queued or
   * not admitted.
   */
  enqueue(job: Job): boolean {
    const comparing = 'ship' in this.opts ? undefined : this.opts;
    // A shipped batch is taken whole or not at all: what the collector would refuse (`OPTIONS *`)
    // must not sink the reads shipped with it.
    if (comparing ? !this.backends.has(job.target) : !job.request.url.startsWith('/')) {
      this.counts.skipped++;
      return false;
    }
    if (this.waiting() >= this.maxQueue) {
      this.counts.dropped++;
      this.onChange?.(this.waiting(), true);
      return false;
    }
    if (comparing?.admit && !comparing.admit(job)) {
      this.counts.unsampled++;
      return true;
    }
    if (this.shipper) {
      const { request, primary, primaryDoneAt } = job;
      this.shipper.add({ request, primary, primaryDoneAt });
      this.onChange?.(this.waiting(), false);
      return true;
    }
    const barrier = comparing?.barrier;
    if (barrier) void this.pass({ ...job, deadlineAt: performance.now() + this.timeoutMs }, barrier);
    else this.ready(job);
    return true;
  }

  /**
   * Where a shipping mirror learns how long (ms) the node has had no request in flight, 0 while one
   * is (the router). A comparing mirror does not need it.
   */
  watchIdle(idleFor: () => number): void {
    if (this.shipper) this.shipper.idleFor = idleFor;
  }

  /** The node's last request in flight has ended (the router): a shipping mirror's quiet starts. */
  nodeIdle(): void {
    this.shipper?.nodeIdle();
  }

  /** Ships what waits for a quiet moment now, and waits for it (bounded); a no-op when comparing. */
  async flush(timeoutMs: number): Promise<void> {
    await this.shipper?.flush(timeoutMs);
  }

  /**
   * `queued` counts reads waiting (for the barrier, a slot, or a shipping mirror's quiet moment);
   * `inFlight` counts copies being compared, or a shipping mirror's shipments (batches) on the wire.
   */
  stats(): MirrorStats {
    const shipped = this.shipper?.counts ?? { sent: 0, failed: 0 };
    return {
      enabled: this.enabled,
      queued: this.waiting(),
      inFlight: this.active + (this.shipper?.active ?? 0),
      ...this.counts,
      sent: this.counts.sent + shipped.sent,
      failed: this.counts.failed + shipped.failed,
    };
  }

  private waiting(): number {
    return this.queue.length + this.atBarrier + (this.shipper?.waiting ?? 0);
  }

  /**
   * Waits for the barrier without a slot: the reads waiting share fences, and a copy slot is never
   * held by a read that cannot be sent yet (with few slots, one read per fence would be the pace).
   */
  private async pass(job: Queued, barrier: NonNullable<ComparingMirror['barrier']>): Promise<void> {
    this.atBarrier++;
    this.onChange?.(this.waiting(), false);
    try {
      const barrierPassed = barrier({ request: job.request, primaryDoneAt: job.primaryDoneAt });
      await withDeadline("the mirrored read's consistency barrier", barrierPassed, this.timeoutMs);
    } catch (err) {
      job.barrierError = err instanceof Error ? err.message : String(err);
    } finally {
      this.atBarrier--;
    }
    this.ready(job);
  }

  private ready(job: Queued): void {
    this.queue.push(job);
    this.onChange?.(this.waiting(), false);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.concurrency && this.queue.length > 0) {
      const job = this.queue.shift() as Queued;
      this.onChange?.(this.waiting(), false);
      this.active++;
      void this.compare(job, this.opts as ComparingMirror).finally(() => {
        this.active--;
        this.pump();
      });
    }
  }

  private async compare(job: Queued, opts: ComparingMirror): Promise<void> {
    // What the barrier left of the deadline (at least 1 ms: a copy still waiting is failed by its signal).
    const left = job.deadlineAt === undefined ? this.timeoutMs : job.deadlineAt - performance.now();
    const signal = AbortSignal.timeout(Math.max(1, Math.round(left)));
    let mirror: MirrorExchange['mirror'];
    let sentAt: number | undefined;
    try {
      if (job.barrierError !== undefined) throw new Error(job.barrierError);
      const backend = this.backends.pick(job.target);
      if (backend === undefined) throw new Error(`no upstream for universe '${job.target}'`);
      this.counts.sent++;
      sentAt = performance.now();
      const res = await backend.pool.request({
        path: backend.prefix + job.request.url,
        method: job.request.method as 'GET',
        headers: job.request.headers,
        body: job.request.body.length > 0 ? job.request.body : null,
        signal,
      });
      const body = new BodyCapture(this.maxResponseBytes);
      for await (const chunk of res.body) body.add(chunk as Buffer);
      const headers: string[] = [];
      for (const [name, value] of Object.entries(res.headers)) {
        if (Array.isArray(value)) for (const v of value) headers.push(name, v);
        else if (value !== undefined) headers.push(name, value);
      }
      mirror = {
        universe: job.target,
        status: res.statusCode,
        headers,
        body: body.buffer(),
        truncated: body.truncated,
      };
    } catch (err) {
      this.counts.failed++;
      mirror = { universe: job.target, error: err instanceof Error ? err.message : String(err) };
    }
    try {
      await opts.compare({
        request: job.request,
        primary: job.primary,
        mirror,
        primaryDoneAt: job.primaryDoneAt,
        ...(sentAt === undefined ? {} : { mirrorMs: performance.now() - sentAt }),
        ...(job.barrierError === undefined ? {} : { barrierError: job.barrierError }),
      });
      this.counts.compared++;
    } catch {
      this.counts.compareErrors++;
    }
  }
}
