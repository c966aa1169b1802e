/**
 * The replication slot is created with an exported snapshot: the bulk copy reads every table inside
 * that snapshot, and the stream starts at the slot's consistent point, so no change is missed or
 * applied twice. The snapshot lives only while the creating replication connection stays open and
 * idle, hence `release()` once every copy transaction has imported it.
 */
import pg from 'pg';
import { parseLsn, type Lsn } from './lsn.js';
import { waitUntil, withDeadline } from '../deadline.js';
import { quoteIdent } from '../sql.js';

export interface ExportedSlot {
  slotName: string;
  snapshotName: string;
  consistentPoint: Lsn;
  /** Closes the replication connection; the snapshot can no longer be imported after this. */
  release(): Promise<void>;
}

/**
 * Creating a logical slot waits until every transaction open on the old database has ended (its
 * snapshot must be consistent). One session idle in a transaction would block it silently: after
 * `warnAfterMs` the sessions it waits for are named through `onWait`, and past `timeoutMs` it gives up.
 */
export async function createSlotWithSnapshot(
  url: string,
  slotName: string,
  options: { timeoutMs?: number; warnAfterMs?: number; onWait?: (message: string) => void } = {},
): Promise<ExportedSlot> {
  const conn = new pg.Client({ connectionString: url, replication: 'database' } as pg.ClientConfig);
  conn.on('error', () => {});
  await conn.connect();
  const timeoutMs = options.timeoutMs ?? 120_000;
  const warn = setTimeout(() => {
    void blockingSessions(url)
      .then((who) => options.onWait?.(`creating slot ${slotName} waits for open transactions to end: ${who}`))
      .catch(() => {});
  }, options.warnAfterMs ?? 5_000);
  try {
    const { rows } = await withDeadline(
      `creation of replication slot ${slotName}`,
      conn.query<{ consistent_point: string; snapshot_name: string }>(
        `CREATE_REPLICATION_SLOT ${quoteIdent(slotName)} LOGICAL pgoutput (SNAPSHOT 'export')`,
      ),
      timeoutMs,
      'a transaction left open on the old database blocks it: end it (see pg_stat_activity, state "idle in transaction")',
    );
    const row = rows[0];
    if (!row) throw new Error('CREATE_REPLICATION_SLOT returned nothing');
    return {
      slotName,
      snapshotName: row.snapshot_name,
      consistentPoint: parseLsn(row.consistent_point),
      release: () => conn.end(),
    };
  } catch (err) {
    await conn.end().catch(() => {});
    throw err;
  } finally {
    clearTimeout(warn);
  }
}

/** Sessions holding a transaction id (what slot creation waits for), for the message. */
async function blockingSessions(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number; usename: string; state: string; since: string }>(
      `SELECT pid, usename, state, to_char(xact_start, 'HH24:MI:SS') AS since FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start`,
    );
    return rows.length === 0
      ? 'none found'
      : rows.map((r) => `pid ${r.pid} (${r.usename}, ${r.state} since ${r.since})`).join(', ');
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops the slot if it exists (it must not be in use). */
export async function dropSlot(client: pg.Client, slotName: string): Promise<void> {
  await client.query(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
}

export async function slotExists(client: pg.Client, slotName: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [
    slotName,
  ]);
  return (rowCount ?? 0) > 0;
}

/**
 * A conversion process that died (kill -9) can leave its walsender holding the slot for a moment;
 * the next one ends it, so that resuming does not fail with "slot is active".
 */
export async function releaseSlot(client: pg.Client, slotName: string, timeoutMs = 10_000): Promise<void> {
  await client.query(
    'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
    [slotName],
  );
  await waitUntil(
    `replication slot ${slotName} released by its previous holder`,
    async () => {
      const { rowCount } = await client.query(
        'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active',
        [slotName],
      );
      return rowCount ? undefined : true;
    },
    { timeoutMs },
  );
}
