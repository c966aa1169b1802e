/**
 * Bulk copy inside the slot's exported snapshot: each source table is read with COPY (text form,
 * streamed, bounded memory), converted row by row, and written in batches — with COPY while the
 * targets are empty, with upserts once a key already exists; each batch and its lineage commit together.
 * Indexes of targets that were empty, and the lineage's key, are built once after the copy
 * (deferred-indexes.ts): the copy is all-or-nothing, an interrupted one starts over.
 * Tables run one after the other in the conversion's order, or several at once (`parallel`) with each
 * waiting for the tables it declares `after` (a transform's lookups read their output).
 */
import pg from 'pg';
import { quoteLiteral } from '../sql.js';
import { connectClient, connectClients } from '../database.js';
import { settleAll } from '../deadline.js';
import { to as copyTo } from 'pg-copy-streams';
import { setImmediate } from 'node:timers/promises';
import { copyRowsIn, copyTextIn, isUniqueViolation } from './copy-in.js';
import { RefusedRowError, constraintDefinition, isRefusedRow, type PgViolation } from './refused-row.js';
import { CopyTextBatch, segmentRows } from './copy-batch.js';
import { CopyTextParser } from './copy-text.js';
import { cachedLookup } from './lookup.js';
import type { RowConverter } from './row-converter.js';
import { quote, quoteQualified, upsert } from './target.js';
import { CopyTargets } from './copy-targets.js';
import { restoreDeferred } from './deferred-indexes.js';
import { addLineageKey, dropLineageKey } from './lineage.js';
import { checkKeyedTypes } from './keyed-lineage.js';

export interface CopyProgress {
  table: string;
  /** Rows of `table` converted so far. */
  rows: number;
  bytes: number;
  /** Over all tables: rows converted so far, and the planner's estimate of the total. */
  copiedRows: number;
  estimatedRows: number;
  /** Seconds left at the rate so far, when it can be told. */
  etaSeconds?: number;
}

export interface CopyResult {
  rows: number;
  bytes: number;
  targetRows: number;
}

export interface CopyOptions {
  sourceUrl: string;
  targetUrl: string;
  snapshotName: string;
  converter: RowConverter;
  /** Tables copied at once, each on its own connections importing the same snapshot (default 1). */
  parallel?: number;
  /** Waited on between batches: the copy yields while the old universe is busy. */
  throttle?: { wait(): Promise<void> };
  onProgress?: (progress: CopyProgress) => void;
  /**
   * Build the indexes of targets found empty after the copy instead of row by row. Off when the
   * copy runs again because it wrote a key twice (N:1 outputs need the unique index's conflicts).
   */
  deferIndexes?: boolean;
}

/**
 * A batch ends at this many source rows or this much COPY text, whichever comes first. Each batch is
 * a target transaction, and the new database and this process take turns at its edges (the next
 * batch converts while this one is written, then waits for it): 40,000 rows of the benchmark's 1:N
 * copy took ~0.6 of the time 5,000 did (docs/benchmarks.md, convert, 2026-12-04). The text bound
 * keeps wide rows from growing a batch without limit; two batches are in memory at most.
 */
const BATCH_ROWS = 40_000;
const BATCH_CHARS = 16 * 1024 * 1024;
const YIELD_ROWS = 500;

export async function copySnapshot(options: CopyOptions): Promise<CopyResult> {
  const { converter } = options;
  const tables = converter.tableNames();
  // The estimate, the connections and the index check go side by side: each costs connects.
  const estimating = estimateRows(options.sourceUrl, tables);
  estimating.catch(() => {}); // awaited below, once the connections are there to close
  let estimatedRows = 0;
  const total: CopyResult = { rows: 0, bytes: 0, targetRows: 0 };
  const started = performance.now();
  const copied = new Map<string, number>();
  const report = (p: Pick<CopyProgress, 'table' | 'rows' | 'bytes'>) => {
    copied.set(p.table, p.rows);
    const copiedRows = [...copied.values()].reduce((a, b) => a + b, 0);
    const rate = copiedRows / ((performance.now() - started) / 1000);
    const left = Math.max(0, estimatedRows - copiedRows);
    options.onProgress?.({
      ...p,
      copiedRows,
      estimatedRows,
      ...(rate > 0 ? { etaSeconds: Math.round(left / rate) } : {}),
    });
  };
  const [lookups, written] = await connectClients([options.targetUrl, 'new'], [options.targetUrl, 'new']);
  const targets = new CopyTargets(written, options.targetUrl, options.deferIndexes ?? false);
  const cached = cachedLookup(lookups);
  const ctx: CopyContext = {
    targets,
    lookup: async (table, where) => {
      const building = targets.ready(table);
      if (building) await building;
      return cached(table, where);
    },
  };
  const slots = new Slots(Math.max(1, options.parallel ?? 1));
  const done = new Map<string, Promise<void>>();
  // The first table to fail stops the others at their next batch: nothing keeps writing behind an error.
  let failure: unknown;
  const guarded: CopyOptions = {
    ...options,
    throttle: {
      wait: async () => {
        if (failure !== undefined) throw failure;
        await options.throttle?.wait();
      },
    },
  };
  try {
    // Indexes left deferred by an interrupted copy are rebuilt on the tables emptied since (instant),
    // so that each is described with its key and deferred again from its full set of indexes; the
    // lineage's key is dropped, to be built once after the copy (a sort) as the targets' indexes are.
    // (A source that cannot be reached is reported after this: harmless, the next copy does the same.)
    await settleAll([restoreDeferred(options.targetUrl), dropLineageKey(lookups)]);
    estimatedRows = await estimating;
    for (const table of tables) {
      const task = (async () => {
        await Promise.all(converter.after(table).map((t) => done.get(t)));
        await slots.run(async () => {
          if (failure !== undefined) throw failure;
          const result = await copyTable(guarded, table, ctx, report);
          total.rows += result.rows;
          total.bytes += result.bytes;
          total.targetRows += result.targetRows;
        });
      })();
      task.catch((err: unknown) => (failure ??= err));
      done.set(table, task);
    }
    // The first table to fail is the one reported, whichever comes first in the order.
    await settleAll(done.values()).catch((err: unknown) => {
      throw failure ?? err;
    });
    // Each on its own connection: the new database builds them side by side.
    await settleAll([targets.restoreAll(), addLineageKey(options.targetUrl)]);
    return total;
  } finally {
    await lookups.end().catch(() => {});
    await targets.end();
  }
}

interface CopyContext {
  targets: CopyTargets;
  lookup: ReturnType<typeof cachedLookup>;
}

/** One table, on its own source transaction (importing the snapshot) and target connection. */
async function copyTable(
  options: CopyOptions,
  table: string,
  ctx: CopyContext,
  report: (p: Pick<CopyProgress, 'table' | 'rows' | 'bytes'>) => void,
): Promise<CopyResult> {
  const { converter } = options;
  const [source, target] = await connectClients([options.sourceUrl, 'old'], [options.targetUrl, 'new']);
  const { targets } = ctx;
  const result: CopyResult = { rows: 0, bytes: 0, targetRows: 0 };
  try {
    // The batches need not wait for their WAL to reach disk: a copy cut short by a crash is started
    // over with its targets emptied, and the commit that marks it done (Converter.copy, synchronous)
    // flushes the WAL of every batch before it. It took a tenth to a quarter of the copy's time.
    await target.query('SET synchronous_commit = off');
    await checkKeyed(converter, table, targets);
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await source.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(options.snapshotName)}`);
    const { columns } = converter.source(table);
    const parser = new CopyTextParser(columns);
    // Asked before each batch: here before the first, before COPY starts (nothing left unread on a throw).
    await options.throttle?.wait();
    const stream = source.query(
      copyTo(`COPY (SELECT ${columns.map(quote).join(', ')} FROM ${quoteQualified(table)}) TO STDOUT`),
    );
    const mode: WriteMode = { copyIn: true };
    // A refused row is named by its source row's key (see refusedRow).
    const from: BatchSource = { table, keyOf: (row) => converter.keyOf(table, row) };
    // Identity rows need none; keyed ones are found through their key columns (api.ts, sourceKeyIn).
    const withLineage =
      converter.identityTarget(table) === undefined && converter.keyedBy(table) === undefined;
    // Rows are converted as they are parsed, into the batch's COPY text (see copy-batch.ts).
    let batch = new CopyTextBatch();
    let batchRows = 0;
    // Converting a batch overlaps with writing the previous one (the new database works meanwhile).
    let writing: Promise<number> | undefined;
    const flush = async () => {
      const full = batch;
      const rows = batchRows;
      batch = new CopyTextBatch();
      batchRows = 0;
      if (writing) result.targetRows += await writing;
      writing = writeBatch(target, targets, full, mode, from);
      writing.catch(() => {}); // awaited (and thrown) at the next flush or the end of the table
      result.rows += rows;
      report({ table, rows: result.rows, bytes: result.bytes });
      await options.throttle?.wait();
    };
    // COPY sends a message per row: parse them in larger slices.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const parse = async () => {
      for (const row of parser.push(pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending))) {
        const result = converter.convert(table, row, ctx);
        for (const o of result instanceof Promise ? await result : result) {
          // Known after the table's first rows: no await per output.
          const t = targets.known(o.table) ?? (await targets.table(o.table));
          batch.add(o.table, o.row, withLineage ? t : undefined);
        }
        batch.endSource(table, row, withLineage ? converter.keyOf(table, row) : undefined);
        if (++batchRows >= BATCH_ROWS || batch.chars >= BATCH_CHARS) await flush();
        // Let the previous batch's write take its next step (BEGIN, each COPY, COMMIT) meanwhile:
        // converting a whole slice without yielding left the new database idle between steps.
        else if (batchRows % YIELD_ROWS === 0) await setImmediate();
      }
      pending = [];
      pendingBytes = 0;
    };
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      result.bytes += chunk.length;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= 256 * 1024) await parse();
    }
    if (pending.length > 0) await parse();
    parser.end();
    if (batchRows > 0) await flush();
    if (writing) result.targetRows += await writing;
    await source.query('COMMIT');
    return result;
  } finally {
    await source.end().catch(() => {});
    await target.end().catch(() => {});
  }
}

/** A keyed table's listed targets can hold its key as it is, checked before anything is copied. */
async function checkKeyed(converter: RowConverter, table: string, targets: CopyTargets): Promise<void> {
  const keyed = converter.keyedBy(table);
  if (!keyed) return;
  for (const k of keyed) checkKeyedTypes(converter.source(table), await targets.table(k.table), k.columns);
}

/** Row estimates (planner statistics, live tuple counts) for the ETA; never a full count. */
async function estimateRows(url: string, tables: string[]): Promise<number> {
  const client = await connectClient(url, 'old');
  try {
    const { rows } = await client.query<{ n: string }>(
      `SELECT coalesce(sum(greatest(c.reltuples, s.n_live_tup, 0)), 0)::bigint::text AS n
         FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.oid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)`,
      [tables.map((t) => quoteQualified(t))],
    );
    return Number(rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

/** At most `size` tasks at once. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/** How a table's batches are written: COPY while the targets are empty, upserts after a conflict. */
interface WriteMode {
  copyIn: boolean;
}

type SourceRow = Record<string, string | null>;

/** The source table a batch was converted from, and how its rows' keys are spelled. */
interface BatchSource {
  table: string;
  keyOf(row: SourceRow): string;
}

/** Writes a converted batch with its lineage in one transaction; returns the target rows written. */
async function writeBatch(
  target: pg.Client,
  targets: CopyTargets,
  batch: CopyTextBatch,
  mode: WriteMode,
  source: BatchSource,
): Promise<number> {
  const segments = batch.segments();
  // Tables with deferred indexes cannot conflict: COPY, whatever the mode.
  const plan = () => segments.map((s) => mode.copyIn || targets.isDeferred(s.table));
  for (let copy = plan(); ;) {
    try {
      await inTransaction(target, async () => {
        for (const [i, s] of segments.entries()) {
          if (copy[i]) await copyTextIn(target, s.table, s.columns, s.text.bytes());
          else await upsert(target, await targets.table(s.table), segmentRows(s));
        }
        // Each source row is copied once, so its lineage is new even when its outputs were not.
        await copyTextIn(target, 'imago.lineage', LINEAGE_COLUMNS, batch.lineage.bytes());
      });
      return batch.outputs;
    } catch (err) {
      if (!isRefusedRow(err)) throw err;
      // Rows already there (a target seeded by the new version, or N:1 outputs): upsert from now on —
      // also into a table whose indexes a lookup built meanwhile (no longer deferred).
      if (isUniqueViolation(err)) mode.copyIn = false;
      const next = plan();
      if (isUniqueViolation(err) && next.some((c, i) => c !== copy[i])) {
        copy = next;
        continue;
      }
      // Not something upserts resolve: the new database refuses a row. Name its source row.
      throw await refusedRow(target, targets, batch, copy, source, err);
    }
  }
}

/**
 * The row of a batch the new database refuses, found by writing the batch again as it was written,
 * in one transaction rolled back at the end: each segment whole, and the one that fails bisected
 * (savepoints; what was written before a failing slice is kept, as in the batch), so a few dozen
 * statements find the first refused row of 40,000. Constraints are checked immediately meanwhile
 * (a deferred one would only fail at COMMIT). The error names the source row that produced it.
 */
async function refusedRow(
  target: pg.Client,
  targets: CopyTargets,
  batch: CopyTextBatch,
  copy: boolean[],
  source: BatchSource,
  original: PgViolation,
): Promise<RefusedRowError> {
  let found: { err: PgViolation; sourceKey: string; table: string } | undefined;
  try {
    await target.query('BEGIN');
    await target.query('SET CONSTRAINTS ALL IMMEDIATE');
    for (const [i, s] of batch.segments().entries()) {
      const rows = segmentRows(s);
      const table = await targets.table(s.table);
      const write = async (from: number, to: number): Promise<unknown> => {
        await target.query('SAVEPOINT imago_refused');
        try {
          const slice = rows.slice(from, to);
          if (copy[i]) await copyRowsIn(target, s.table, s.columns, slice);
          else await upsert(target, table, slice);
          await target.query('RELEASE SAVEPOINT imago_refused');
          return undefined;
        } catch (err) {
          await target.query('ROLLBACK TO SAVEPOINT imago_refused');
          if (!isRefusedRow(err)) throw err;
          return err;
        }
      };
      if ((await write(0, rows.length)) === undefined) continue;
      // rows[0, start) are written; writing rows[start, end) fails.
      let start = 0;
      let end = rows.length;
      while (end - start > 1) {
        const mid = Math.floor((start + end) / 2);
        if ((await write(start, mid)) === undefined) start = mid;
        else end = mid;
      }
      const err = await write(start, start + 1);
      if (isRefusedRow(err))
        found = {
          err,
          table: s.table,
          sourceKey: source.keyOf(batch.sourceRows[s.sources[start] as number] as SourceRow),
        };
      break;
    }
  } finally {
    await target.query('ROLLBACK').catch(() => {});
  }
  const err = found?.err ?? original;
  return new RefusedRowError(err, {
    during: 'the bulk copy',
    sourceTable: source.table,
    ...(found ? { sourceKey: found.sourceKey, targetTable: found.table } : {}),
    definition: await constraintDefinition(target, err),
  });
}

const LINEAGE_COLUMNS = ['source_table', 'source_key', 'targets'];

async function inTransaction(target: pg.Client, work: () => Promise<void>): Promise<void> {
  await target.query('BEGIN');
  try {
    await work();
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
