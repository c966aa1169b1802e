/**
 * Late writes: source transactions that commit in the old database after the fence — a cron job or
 * another service writing behind the old app's back, a hidden dependency the new version does not
 * know about. They are seen on the change stream (still converted, so nothing is lost) and reported
 * with their tables and commit time.
 */
import type { AppliedTransaction } from '../conversion/converter.js';
import { formatLsn } from '../capture/lsn.js';

export interface LateWrite {
  lsn: string;
  commitTime: string;
  tables: Record<string, number>;
}

export class LateWriteDetector {
  private fence: bigint | undefined;
  private readonly found: LateWrite[] = [];
  private listeners: ((w: LateWrite) => void)[] = [];

  /** Pass to converter.onApplied once; the detector stays inert until armed. */
  readonly observe = (txn: AppliedTransaction): void => {
    if (this.fence === undefined || txn.markerOnly || txn.commitEndLsn <= this.fence) return;
    const write = {
      lsn: formatLsn(txn.commitEndLsn),
      commitTime: txn.commitTime.toISOString(),
      tables: txn.tables,
    };
    this.found.push(write);
    for (const l of this.listeners) l(write);
  };

  /** From now on, anything committed after `fenceLsn` is a late write. */
  arm(fenceLsn: bigint): void {
    this.fence = fenceLsn;
  }

  disarm(): void {
    this.fence = undefined;
  }

  onLateWrite(listener: (w: LateWrite) => void): void {
    this.listeners.push(listener);
  }

  writes(): LateWrite[] {
    return [...this.found];
  }
}
