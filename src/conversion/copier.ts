/**
 * Bulk copy inside the slot's exported snapshot: each source table is read with COPY (text form,
 * streamed, bounded memory), converted row by row, and written in batches — with COPY while the
 * targets are empty, with upserts once a key already exists; each batch and its lineage commit together. Tables are converted in the conversion's order, so lookups find rows of earlier tables.
 */
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { TargetRow, TargetValue } from './api.js';
import { copyRowsIn, isUniqueViolation } from './copy-in.js';
import { CopyTextParser } from './copy-text.js';
import { writeLineage, type LineageEntry } from './lineage.js';
import { cachedLookup } from './lookup.js';
import type { RowConverter } from './row-converter.js';
import {
  keyOf,
  quote,
  quoteQualified,
  toRows,
  bySignature,
  upsert,
  type TargetCatalog,
  type TargetTable,
} from './target.js';

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

const BATCH_ROWS = 5000;

export async function copySnapshot(options: {
  sourceUrl: string;
  snapshotName: string;
  target: pg.Client;
  /** For the transforms' lookups: their own connection, so they never run inside a batch being written. */
  targetUrl: string;
  converter: RowConverter;
  catalog: TargetCatalog;
  onProgress?: (progress: CopyProgress) => void;
}): Promise<CopyResult> {
  const { target, converter, catalog } = options;
  const source = new pg.Client({ connectionString: options.sourceUrl });
  source.on('error', () => {});
  await source.connect();
  const lookups = new pg.Client({ connectionString: options.targetUrl });
  lookups.on('error', () => {});
  await lookups.connect();
  const ctx = { lookup: cachedLookup(lookups) };
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
      const mode: WriteMode = { copyIn: true };
      // Converting a batch overlaps with writing the previous one (the new database works meanwhile).
      let writing: Promise<number> | undefined;
      const flush = async () => {
        const rows = batch;
        batch = [];
        const converted = await convertBatch(converter, catalog, table, rows, ctx);
        if (writing) total.targetRows += await writing;
        writing = writeBatch(target, catalog, converted, mode);
        writing.catch(() => {}); // awaited (and thrown) at the next flush or the end of the table
        progress.rows += rows.length;
        options.onProgress?.({ ...progress });
      };
      // COPY sends a message per row: parse them in larger slices.
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const parse = async () => {
        for (const row of parser.push(
          pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending),
        )) {
          batch.push(row);
          if (batch.length >= BATCH_ROWS) await flush();
        }
        pending = [];
        pendingBytes = 0;
      };
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        progress.bytes += chunk.length;
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= 256 * 1024) await parse();
      }
      if (pending.length > 0) await parse();
      parser.end();
      await flush();
      if (writing) total.targetRows += await writing;
      total.rows += progress.rows;
      total.bytes += progress.bytes;
    }
    await source.query('COMMIT');
    return total;
  } finally {
    await source.end().catch(() => {});
    await lookups.end().catch(() => {});
  }
}

/** How a table's batches are written: COPY while the targets are empty, upserts after a conflict. */
interface WriteMode {
  copyIn: boolean;
}

interface ConvertedBatch {
  outputs: number;
  byTable: Map<string, Record<string, TargetValue>[]>;
  tables: Map<string, TargetTable>;
  lineage: LineageEntry[];
}

async function convertBatch(
  converter: RowConverter,
  catalog: TargetCatalog,
  table: string,
  rows: Record<string, string | null>[],
  ctx: { lookup: ReturnType<typeof cachedLookup> },
): Promise<ConvertedBatch> {
  const outputs: TargetRow[] = [];
  const lineage: LineageEntry[] = [];
  const withLineage = converter.identityTarget(table) === undefined;
  const tables = new Map<string, TargetTable>();
  for (const row of rows) {
    const converted = await converter.convert(table, row, ctx);
    for (const o of converted) outputs.push(o);
    if (!withLineage) continue;
    const targets: LineageEntry['targets'] = [];
    for (const o of converted) {
      let t = tables.get(o.table);
      if (!t) tables.set(o.table, (t = await catalog.table(o.table)));
      targets.push([o.table, keyOf(t, o.row)]);
    }
    lineage.push({ sourceTable: table, sourceKey: converter.keyOf(table, row), targets });
  }
  const byTable = toRows(outputs);
  for (const name of byTable.keys()) if (!tables.has(name)) tables.set(name, await catalog.table(name));
  return { outputs: outputs.length, byTable, tables, lineage };
}

async function writeBatch(
  target: pg.Client,
  catalog: TargetCatalog,
  batch: ConvertedBatch,
  mode: WriteMode,
): Promise<number> {
  const { byTable, tables, lineage } = batch;
  if (batch.outputs === 0 && lineage.length === 0) return 0;
  if (mode.copyIn) {
    try {
      await inTransaction(target, catalog, async () => {
        for (const [name, targetRows] of byTable) {
          for (const [columns, group] of bySignature(targetRows))
            await copyRowsIn(target, name, columns, group);
        }
        await copyRowsIn(
          target,
          'imago.lineage',
          ['source_table', 'source_key', 'targets'],
          lineage.map((e) => ({
            source_table: e.sourceTable,
            source_key: e.sourceKey,
            targets: JSON.stringify(e.targets),
          })),
        );
      });
      return batch.outputs;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      // Rows already there (a target seeded by the new version, or N:1 outputs): upsert from now on.
      mode.copyIn = false;
    }
  }
  await inTransaction(target, catalog, async () => {
    for (const [name, targetRows] of byTable)
      await upsert(target, tables.get(name) as TargetTable, targetRows);
    await writeLineage(target, lineage);
  });
  return batch.outputs;
}

async function inTransaction(
  target: pg.Client,
  catalog: TargetCatalog,
  work: () => Promise<void>,
): Promise<void> {
  await target.query('BEGIN');
  try {
    await work();
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    catalog.forget();
    throw err;
  }
}
