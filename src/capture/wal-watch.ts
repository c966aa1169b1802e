/**
 * Watches the WAL the slot makes the old database keep. An upgrade that stalls (a long copy, a
 * stopped converter) must never fill the old server's disk silently: past `warnBytes` it warns, past
 * `limitBytes` it stops the conversion with an error that says what to do (the slot is kept so the
 * upgrade can resume; `abort` drops it and frees the WAL). PostgreSQL's own max_slot_wal_keep_size,
 * if set, remains the last line of defence.
 */
import pg from 'pg';
import { ImagoError, errorMessage } from '../errors.js';

export interface WalWatchOptions {
  url: string;
  slotName: string;
  warnBytes: number;
  limitBytes: number;
  intervalMs?: number;
  /** Retained WAL past warnBytes, or the check itself failing (said once until it works again). */
  onWarn(message: string): void;
  onLimit(err: ImagoError): void;
}

export async function retainedWalBytes(client: pg.Client, slotName: string): Promise<number | undefined> {
  const { rows } = await client.query<{ bytes: string | null }>(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS bytes
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  return rows[0]?.bytes == null ? undefined : Number(rows[0].bytes);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Starts watching; returns a function that stops it. */
export function watchWal(options: WalWatchOptions): () => Promise<void> {
  let warned = false;
  let failing = false;
  let stopped = false;
  const check = async () => {
    if (stopped) return;
    // A fresh connection per check: a dropped one must not switch the safety net off unnoticed.
    const client = new pg.Client({ connectionString: options.url, application_name: 'imago-wal-watch' });
    client.on('error', () => {});
    try {
      await client.connect();
      const bytes = await retainedWalBytes(client, options.slotName);
      failing = false;
      if (bytes === undefined || stopped) return;
      if (bytes >= options.limitBytes) {
        stopped = true;
        options.onLimit(
          new ImagoError(
            `the replication slot holds ${formatBytes(bytes)} of WAL on the old database, over the limit of ${formatBytes(options.limitBytes)}; the upgrade is paused`,
            options.slotName,
            'free disk by aborting the upgrade (drops the slot), or raise the limit and resume if the disk can take it',
          ),
        );
      } else if (bytes >= options.warnBytes && !warned) {
        warned = true;
        options.onWarn(
          `the replication slot holds ${formatBytes(bytes)} of WAL on the old database and growing`,
        );
      } else if (bytes < options.warnBytes) {
        warned = false;
      }
    } catch (err) {
      if (!failing)
        options.onWarn(`cannot check the WAL held by slot ${options.slotName}: ${errorMessage(err)}`);
      failing = true;
    } finally {
      await client.end().catch(() => {});
    }
  };
  let running = check();
  const timer = setInterval(() => {
    running = running.then(check);
  }, options.intervalMs ?? 5000);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}
