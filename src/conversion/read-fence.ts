/**
 * A fence for reads, cheaper than a marker: the old WAL's insert position X is read (no write, no
 * flush), then the stream only has to apply a transaction ending at or past X. Every transaction
 * committed before the read of X ends before X, and transactions are applied in commit order, so
 * everything committed before the call is then applied. Under writes another transaction soon passes
 * X; when none comes within `markerAfterMs` (an idle old database), a marker (Converter.catchUp) is
 * written to move the stream past X.
 *
 * Why not always a marker: each one is a transaction on the old database, with its own WAL flush,
 * taken while its clients are being served; the runtime test's barrier runs several a second.
 */
import type { Lsn } from '../capture/lsn.js';
import { withDeadline } from '../deadline.js';

export interface ReadFenceSource {
  /** pg_current_wal_insert_lsn() on the old database. */
  insertLsn(): Promise<Lsn>;
  /** The commit end of the last transaction applied and checkpointed. */
  appliedLsn(): Lsn;
  /** Called after each transaction is applied; returns an unsubscribe. */
  onApplied(listener: (txn: { commitEndLsn: Lsn }) => void): () => void;
  /** The marker fence. */
  catchUp(timeoutMs: number): Promise<unknown>;
}

export async function readFence(
  source: ReadFenceSource,
  timeoutMs: number,
  markerAfterMs = 100,
): Promise<'passed' | 'marker'> {
  const started = performance.now();
  const target = await withDeadline('reading the old WAL position', source.insertLsn(), timeoutMs);
  if (source.appliedLsn() >= target) return 'passed';
  let unsubscribe = () => {};
  let timer: NodeJS.Timeout | undefined;
  const passed = await new Promise<boolean>((resolve) => {
    unsubscribe = source.onApplied((txn) => txn.commitEndLsn >= target && resolve(true));
    // Checked again once subscribed: a transaction applied in between would be missed otherwise.
    if (source.appliedLsn() >= target) resolve(true);
    timer = setTimeout(() => resolve(false), Math.min(markerAfterMs, timeoutMs));
  }).finally(() => {
    unsubscribe();
    clearTimeout(timer);
  });
  if (passed) return 'passed';
  await source.catchUp(Math.max(1, timeoutMs - (performance.now() - started)));
  return 'marker';
}
