/**
 * Read coalescing while the stream is catching up. A walsender sends each pgoutput message as it
 * produces it, and a reader that keeps up wakes for every send; on one host, each wake-up of a
 * sleeping reader is paid by the sender — the walsender, whose logical decoding is the bottleneck of
 * a backlog drain. Measured on a backlog of 200,000 single-row transactions (docs/benchmarks.md,
 * convert, 2026-12-04): read in 63,000 chunks of ~700 bytes, the walsender spent 1.78 s; read in
 * 11,700 chunks of ~3.7 KB, 1.36 s, and the drain was faster than native replication's.
 *
 * So while the stream is behind (its newest transaction committed long before the server sent it,
 * both by the server's clock, so host clocks do not matter), a small read pauses the socket for a
 * moment. A paused net.Socket still reads until its own buffer holds 16 KiB and then hands that over
 * read by read, each small one waiting again; with its buffer full it stops reading, and the kernel
 * gathers the rest, which later reads take in tens of kilobytes. (Handing the buffer over as one
 * read instead kept the socket reading eagerly: 1,200 reads per backlog instead of 850 and more
 * walsender CPU.) Only reads of data over 100 ms old wait, so a live stream is never delayed and
 * apply lag is unchanged; the end of a catch-up can take a few milliseconds longer. The caller's
 * own pause (backpressure) and this one are kept apart: the socket reads again only when neither
 * holds it.
 */

/** Behind by more than this: catching up (the apply queue's threshold too). */
const BEHIND_MS = 100;
/** A read at least this large has gathered enough: read on at once. */
const ENOUGH_BYTES = 32 * 1024;
/** How long a small read waits; at ~20 MB/s of decoded changes, a few tens of kilobytes arrive. */
const WAIT_MS = 1;

export interface Readable {
  pause(): void;
  resume(): void;
}

export class ReadCoalescer {
  private held = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly socket: Readable) {}

  /** After a read of `bytes`, with the stream `behindMs` behind the server: waits when worth it. */
  afterRead(bytes: number, behindMs: number): void {
    if (this.timer || bytes >= ENOUGH_BYTES || !(behindMs > BEHIND_MS)) return;
    this.socket.pause();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.held) this.socket.resume();
    }, WAIT_MS);
  }

  /** True while a small read's wait is under way. */
  get waiting(): boolean {
    return this.timer !== undefined;
  }

  /** The caller's backpressure: no reads until `release`. */
  hold(): void {
    this.held = true;
    this.socket.pause();
  }

  release(): void {
    this.held = false;
    if (!this.timer) this.socket.resume();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
