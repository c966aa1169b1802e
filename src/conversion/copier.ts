/**
 * Bulk copy inside the slot's exported snapshot: each source table is read with COPY (text form,
 * streamed, bounded memory), converted row by row, and written in batches; each batch and its lineage
 * commit together. Tables are converted in the conversion's order, so lookups find rows of earlier tables.
 */
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { TargetRow } from './api.js';
import { CopyTextParser } from './copy-text.js';
import { writeLineage, type LineageEntry } from './lineage.js';
import { cachedLookup } from './lookup.js';
import type { RowConverter } from './row-converter.js';
import { keyOf, quote, quoteQualified, toRows, upsert, type TargetCatalog } from './target.js';

export interface CopyProgress {
  table: string;
  rows: number;
  bytes: number;
}

export interface CopyResult {
  rows: number;
  bytes: number;
  targetRows: number;
}

const BATCH_ROWS = 2000;

export async function copySnapshot(options: {
  sourceUrl: string;
  snapshotName: string;
  target: pg.Client;
  converter: RowConverter;
  catalog: TargetCatalog;
  onProgress?: (progress: CopyProgress) => void;
}): Promise<CopyResult> {
  const { target, converter, catalog } = options;
  const source = new pg.Client({ connectionString: options.sourceUrl });
  source.on('error', () => {});
  await source.connect();
  const ctx = { lookup: cachedLookup(target) };
  const total: CopyResult = { rows: 0, bytes: 0, targetRows: 0 };
  try {
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await source.query(`SET TRANSACTION SNAPSHOT '${options.snapshotName.replace(/'/g, "''")}'`);
    for (const table of converter.tableNames()) {
      const { columns } = converter.source(table);
      const parser = new CopyTextParser(columns);
      const stream = source.query(
        copyTo(`COPY (SELECT ${columns.map(quote).join(', ')} FROM ${quoteQualified(table)}) TO STDOUT`),
      );
      const progress: CopyProgress = { table, rows: 0, bytes: 0 };
      let batch: Record<string, string | null>[] = [];
      const flush = async () => {
        total.targetRows += await writeBatch(target, converter, catalog, table, batch, ctx);
        progress.rows += batch.length;
        batch = [];
        options.onProgress?.({ ...progress });
      };
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        progress.bytes += chunk.length;
        for (const row of parser.push(chunk)) {
          batch.push(row);
          if (batch.length >= BATCH_ROWS) await flush();
        }
      }
      parser.end();
      await flush();
      total.rows += progress.rows;
      total.bytes += progress.bytes;
    }
    await source.query('COMMIT');
    return total;
  } finally {
    await source.end().catch(() => {});
  }
}

async function writeBatch(
  target: pg.Client,
  converter: RowConverter,
  catalog: TargetCatalog,
  table: string,
  rows: Record<string, string | null>[],
  ctx: { lookup: ReturnType<typeof cachedLookup> },
): Promise<number> {
  if (rows.length === 0) return 0;
  const outputs: TargetRow[] = [];
  const pending: { sourceKey: string; outputs: TargetRow[] }[] = [];
  for (const row of rows) {
    const converted = await converter.convert(table, row, ctx);
    outputs.push(...converted);
    pending.push({ sourceKey: converter.keyOf(table, row), outputs: converted });
  }
  await target.query('BEGIN');
  try {
    for (const [name, targetRows] of toRows(outputs))
      await upsert(target, await catalog.table(name), targetRows);
    if (converter.identityTarget(table) === undefined) {
      const entries: LineageEntry[] = [];
      for (const p of pending) {
        const targets: LineageEntry['targets'] = [];
        for (const o of p.outputs) targets.push([o.table, keyOf(await catalog.table(o.table), o.row)]);
        entries.push({ sourceTable: table, sourceKey: p.sourceKey, targets });
      }
      await writeLineage(target, entries);
    }
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    catalog.forget();
    throw err;
  }
  return outputs.length;
}
