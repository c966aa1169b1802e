/**
 * Imago's own state in the new database (schema `imago`): the stream checkpoint — the commit LSN of
 * the last source transaction applied, written in the same transaction as its changes, which makes
 * apply exactly-once — the lineage of converted rows, and the target tables conversion has written
 * (emptied when an interrupted copy starts over).
 */
import type pg from 'pg';
import { quoteLiteral } from '../sql.js';
import { parseLsn, formatLsn, type Lsn } from '../capture/lsn.js';
import { DEFERRED_INDEX_DDL } from './deferred-indexes.js';
import { emptyTargets } from './empty-targets.js';

export async function ensureStateSchema(client: pg.Client): Promise<void> {
  await client.query(`
    CREATE SCHEMA IF NOT EXISTS imago;
    CREATE TABLE IF NOT EXISTS imago.checkpoint (
      stream text PRIMARY KEY,
      commit_lsn pg_lsn NOT NULL,
      copied boolean NOT NULL DEFAULT false,
      applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    -- What the copy wrote and the stream applied, kept with the checkpoint (in the same transactions),
    -- so that a resumed conversion reports them and not only what its own process did.
    ALTER TABLE imago.checkpoint
      ADD COLUMN IF NOT EXISTS copied_rows bigint NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS copied_bytes bigint NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS target_rows bigint NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS applied_transactions bigint NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS applied_changes bigint NOT NULL DEFAULT 0;
    CREATE TABLE IF NOT EXISTS imago.targets (
      name text PRIMARY KEY
    );
    CREATE TABLE IF NOT EXISTS imago.lineage (
      source_table text NOT NULL,
      source_key text NOT NULL,
      targets text NOT NULL, -- JSON; text is cheaper to write than jsonb and only Imago reads it
      PRIMARY KEY (source_key, source_table) -- see addLineageKey()
    );
    -- How each transform table's lineage is kept (RowConverter.lineageModes): a resume must not change it.
    CREATE TABLE IF NOT EXISTS imago.lineage_mode (
      stream text NOT NULL,
      source_table text NOT NULL,
      mode text NOT NULL,
      PRIMARY KEY (stream, source_table)
    );
    ${DEFERRED_INDEX_DDL}`);
}

/** Records how a fresh copy keeps each table's lineage. */
export async function recordLineageModes(
  client: pg.Client,
  stream: string,
  modes: Map<string, string>,
): Promise<void> {
  await client.query('DELETE FROM imago.lineage_mode WHERE stream = $1', [stream]);
  await client.query(
    'INSERT INTO imago.lineage_mode SELECT $1, t, m FROM unnest($2::text[], $3::text[]) AS u(t, m)',
    [stream, [...modes.keys()], [...modes.values()]],
  );
}

/** How the copy being resumed kept each table's lineage; a table not recorded kept lineage rows. */
export async function readLineageModes(client: pg.Client, stream: string): Promise<Map<string, string>> {
  const { rows } = await client.query<{ source_table: string; mode: string }>(
    'SELECT source_table, mode FROM imago.lineage_mode WHERE stream = $1',
    [stream],
  );
  return new Map(rows.map((r) => [r.source_table, r.mode]));
}

/** What the copy wrote (source rows read, their bytes, target rows written). */
export interface CopiedFigures {
  rows: number;
  bytes: number;
  targetRows: number;
}

/** What the stream applied since the copy: source transactions and their changes. */
export interface AppliedFigures {
  transactions: number;
  changes: number;
}

export interface Checkpoint {
  lsn: Lsn;
  copied: boolean;
  copy: CopiedFigures;
  applied: AppliedFigures;
}

export async function readCheckpoint(client: pg.Client, stream: string): Promise<Checkpoint | undefined> {
  const { rows } = await client.query<{
    commit_lsn: string;
    copied: boolean;
    copied_rows: string;
    copied_bytes: string;
    target_rows: string;
    applied_transactions: string;
    applied_changes: string;
  }>(
    `SELECT commit_lsn::text, copied, copied_rows, copied_bytes, target_rows, applied_transactions, applied_changes
       FROM imago.checkpoint WHERE stream = $1`,
    [stream],
  );
  const row = rows[0];
  return (
    row && {
      lsn: parseLsn(row.commit_lsn),
      copied: row.copied,
      copy: {
        rows: Number(row.copied_rows),
        bytes: Number(row.copied_bytes),
        targetRows: Number(row.target_rows),
      },
      applied: { transactions: Number(row.applied_transactions), changes: Number(row.applied_changes) },
    }
  );
}

/**
 * Sets the checkpoint: at the slot's consistent point before the copy (`copy` undefined: nothing
 * copied yet), and there again with the copy's figures once it is done. The stream's counts start over.
 */
export async function writeCheckpoint(
  client: pg.Client,
  stream: string,
  lsn: Lsn,
  copied = true,
  copy: CopiedFigures = { rows: 0, bytes: 0, targetRows: 0 },
): Promise<void> {
  await client.query(
    `INSERT INTO imago.checkpoint (stream, commit_lsn, copied, copied_rows, copied_bytes, target_rows)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (stream) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, copied = EXCLUDED.copied,
       copied_rows = EXCLUDED.copied_rows, copied_bytes = EXCLUDED.copied_bytes, target_rows = EXCLUDED.target_rows,
       applied_transactions = 0, applied_changes = 0, applied_at = clock_timestamp()`,
    [stream, formatLsn(lsn), copied, copy.rows, copy.bytes, copy.targetRows],
  );
}

/** Empties every target table conversion wrote, the lineage and the checkpoint: a clean start for the copy. */
export async function resetTargets(client: pg.Client, stream: string): Promise<void> {
  await emptyTargets(client);
  await client.query('DELETE FROM imago.checkpoint WHERE stream = $1', [stream]);
}

export async function recordTarget(client: pg.Client, name: string): Promise<void> {
  await client.query('INSERT INTO imago.targets (name) VALUES ($1) ON CONFLICT DO NOTHING', [name]);
}

/** SQL that advances the checkpoint past `applied` (for a simple-protocol script that also commits). */
export function checkpointSql(stream: string, lsn: Lsn, applied: AppliedFigures): string {
  return `INSERT INTO imago.checkpoint (stream, commit_lsn, copied, applied_transactions, applied_changes)
     VALUES (${quoteLiteral(stream)}, ${quoteLiteral(formatLsn(lsn))}, true, ${Math.trunc(applied.transactions)}, ${Math.trunc(applied.changes)})
     ON CONFLICT (stream) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, copied = true,
       applied_transactions = imago.checkpoint.applied_transactions + EXCLUDED.applied_transactions,
       applied_changes = imago.checkpoint.applied_changes + EXCLUDED.applied_changes, applied_at = clock_timestamp()`;
}

/** The checkpoint and the commit of the apply transaction in one round trip (a simple query). */
export async function writeCheckpointAndCommit(
  client: pg.Client,
  stream: string,
  lsn: Lsn,
  applied: AppliedFigures,
): Promise<void> {
  await client.query(`${checkpointSql(stream, lsn, applied)};\nCOMMIT`);
}
