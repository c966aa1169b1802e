/**
 * Groups source transactions for apply. Decoding goes on while a group is being applied; the next
 * group takes every whole transaction that arrived meanwhile (up to a limit), so under a backlog many
 * small source transactions share one target commit, and when the stream is quiet each transaction is
 * applied as soon as it arrives. A group is applied, checkpointed and acknowledged as one, so the new
 * database still only ever holds a prefix of the old one's commit order.
 *
 * Catching up (the newest queued transaction committed well before now), a small group waits a few
 * milliseconds to fill: the applier is then often faster than the old server sends, and applying
 * whatever little has arrived cost a target commit and its round trips per handful of transactions.
 */
import type { SourceTransaction } from '../capture/change.js';

export interface ApplyQueueOptions {
  /** Applies a group of whole transactions atomically (one target transaction). */
  applyGroup(txns: SourceTransaction[]): Promise<void>;
  /** The queue stops at the first failure and reports it here. */
  onFailure(err: unknown): void;
  maxGroupTransactions?: number;
  maxGroupChanges?: number;
  /** Changes waiting before the stream is paused (bounded memory). */
  maxQueuedChanges?: number;
  /** Catching up, a group smaller than this waits (up to `fillWaitMs`) for more transactions. */
  backlogGroupTransactions?: number;
  fillWaitMs?: number;
  /** Behind by more than this (commit time of the newest queued transaction → now): catching up. */
  behindMs?: number;
  /** The queue is full: stop feeding it. */
  pause(): void;
  /** The queue has room again. */
  resume(): void;
}

export class ApplyQueue {
  /**
   * Transactions not yet taken. A taken group leaves the array at once: under a backlog the queue is
   * never empty, and slots kept until it drained held every transaction since, all promoted to the
   * old generation by the scavenges they lived through (measured: 48,725 of 50,000 still referenced).
   */
  private queue: SourceTransaction[] = [];
  private queuedChanges = 0;
  private running: Promise<void> | undefined;
  private failed = false;
  private readonly maxTxns: number;
  private readonly maxChanges: number;
  private readonly maxQueued: number;
  private readonly backlogGroup: number;
  private readonly fillWaitMs: number;
  private readonly behindMs: number;
  /** Ends the wait for a group to fill, while one is under way. */
  private filled: (() => void) | undefined;

  constructor(private readonly options: ApplyQueueOptions) {
    this.maxTxns = options.maxGroupTransactions ?? 2000;
    this.maxChanges = options.maxGroupChanges ?? 20_000;
    // Two full groups of single-row transactions (each counts its changes + 1): enough to have the
    // next group ready when one commits. Decoding further ahead only kept transactions alive across
    // scavenges (20,000: 28 % of the young generation surviving each; 8,000: 15 %, scavenges
    // 222 -> 140 ms per 3 drains of 200,000); the socket's buffers hold the rest at no GC cost.
    this.maxQueued = options.maxQueuedChanges ?? 8_000;
    this.backlogGroup = Math.min(options.backlogGroupTransactions ?? 1000, this.maxTxns);
    this.fillWaitMs = options.fillWaitMs ?? 10;
    this.behindMs = options.behindMs ?? 100;
  }

  private paused = false;

  /** Queues a transaction; pauses the feeder while the queue is full (backpressure on the stream). */
  push(txn: SourceTransaction): void {
    if (this.failed) return;
    this.queue.push(txn);
    this.queuedChanges += txn.changes.length + 1;
    if (!this.paused && this.queuedChanges > this.maxQueued) {
      this.paused = true;
      this.options.pause();
    }
    if (this.filled && this.full()) this.filled();
    this.running ??= this.run();
  }

  /** True when nothing waits to be applied and no group is being applied. */
  idle(): boolean {
    return this.running === undefined && this.queue.length === 0;
  }

  private async run(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.failed) {
        if (this.catchingUp()) await this.fill();
        const group = this.take();
        await this.options.applyGroup(group);
        if (this.paused && this.queuedChanges <= this.maxQueued / 2) {
          this.paused = false;
          this.options.resume();
        }
      }
    } catch (err) {
      this.failed = true;
      this.queue = [];
      this.options.onFailure(err);
    } finally {
      this.running = undefined;
    }
  }

  /** Enough waits for a group not to be worth waiting for more. */
  private full(): boolean {
    return this.queue.length >= this.backlogGroup || this.queuedChanges >= this.maxChanges || this.paused;
  }

  private catchingUp(): boolean {
    if (this.full()) return false;
    const newest = this.queue[this.queue.length - 1];
    return newest !== undefined && Date.now() - newest.commitTimeMs > this.behindMs;
  }

  /** Resolves when the group is full (see `push`) or after `fillWaitMs`, whichever comes first. */
  private fill(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.filled = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.fillWaitMs);
      this.filled = done;
    });
  }

  private take(): SourceTransaction[] {
    let count = 0;
    let changes = 0;
    while (count < this.queue.length && count < this.maxTxns) {
      const next = (this.queue[count] as SourceTransaction).changes.length;
      if (count > 0 && changes + next > this.maxChanges) break;
      count++;
      changes += next;
    }
    this.queuedChanges -= changes + count;
    return this.queue.splice(0, count);
  }
}
