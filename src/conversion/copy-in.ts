/**
 * Writing converted rows with COPY FROM STDIN: the fastest way into PostgreSQL, used by the bulk copy
 * while the target tables are empty. Values are serialised in COPY's text form (they already are
 * PostgreSQL text, so nothing is lost). A duplicate key makes the whole COPY fail; the caller then
 * falls back to upserts.
 */
import type pg from 'pg';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { from as copyFrom } from 'pg-copy-streams';
import type { TargetValue } from './api.js';
import { quote, quoteQualified } from './target.js';
import { copyField } from './copy-text.js';

/** Copies rows that all have the same columns into `table`. */
export async function copyRowsIn(
  client: pg.Client,
  table: string,
  columns: string[],
  rows: Record<string, TargetValue | undefined>[],
): Promise<void> {
  if (rows.length === 0) return;
  let text = '';
  for (const row of rows) {
    for (let i = 0; i < columns.length; i++) text += (i ? '\t' : '') + copyField(row[columns[i] as string]);
    text += '\n';
  }
  await copyTextIn(client, table, columns, Buffer.from(text, 'utf8'));
}

/** Copies rows already in COPY's text form (one line each) into `table`. */
export async function copyTextIn(
  client: pg.Client,
  table: string,
  columns: string[],
  body: Buffer,
): Promise<void> {
  if (body.length === 0) return;
  await pipeline(
    Readable.from([body]),
    client.query(copyFrom(`COPY ${quoteQualified(table)} (${columns.map(quote).join(', ')}) FROM STDIN`)),
  );
}

/** True for PostgreSQL's unique_violation, the one failure the upsert fallback handles. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === '23505';
}
