/**
 * Imago's own state in the new database (schema `imago`): the stream checkpoint — the commit LSN of
 * the last source transaction applied, written in the same transaction as its changes, which makes
 * apply exactly-once — and the lineage of converted rows.
 */
import type pg from 'pg';
import { parseLsn, formatLsn, type Lsn } from '../capture/lsn.js';

export async function ensureStateSchema(client: pg.Client): Promise<void> {
  await client.query(`
    CREATE SCHEMA IF NOT EXISTS imago;
    CREATE TABLE IF NOT EXISTS imago.checkpoint (
      stream text PRIMARY KEY,
      commit_lsn pg_lsn NOT NULL,
      copied boolean NOT NULL DEFAULT false,
      applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE IF NOT EXISTS imago.lineage (
      source_table text NOT NULL,
      source_key text NOT NULL,
      targets jsonb NOT NULL,
      PRIMARY KEY (source_table, source_key)
    );`);
}

export async function readCheckpoint(
  client: pg.Client,
  stream: string,
): Promise<{ lsn: Lsn; copied: boolean } | undefined> {
  const { rows } = await client.query<{ commit_lsn: string; copied: boolean }>(
    'SELECT commit_lsn::text, copied FROM imago.checkpoint WHERE stream = $1',
    [stream],
  );
  const row = rows[0];
  return row && { lsn: parseLsn(row.commit_lsn), copied: row.copied };
}

export async function writeCheckpoint(
  client: pg.Client,
  stream: string,
  lsn: Lsn,
  copied = true,
): Promise<void> {
  await client.query(
    `INSERT INTO imago.checkpoint (stream, commit_lsn, copied) VALUES ($1, $2, $3)
     ON CONFLICT (stream) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, copied = EXCLUDED.copied, applied_at = clock_timestamp()`,
    [stream, formatLsn(lsn), copied],
  );
}
