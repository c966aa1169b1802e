/**
 * Writes into the new database: upserts by primary key (so replaying a source change is idempotent)
 * and deletes by key. Table metadata is read once from the catalog.
 */
import type pg from 'pg';
import { ImagoError } from '../errors.js';
import type { TargetRow, TargetValue } from './api.js';
import { recordTarget } from './state.js';
import { missingTableHint } from '../catalog.js';
import {
  parseTableName,
  quoteIdent as quote,
  quoteLiteral as literal,
  quoteQualified,
  tableKey,
  tableLabel,
} from '../sql.js';

export { quote, literal, quoteQualified };

export interface TargetTable {
  name: string;
  key: string[];
  columns: Set<string>;
  /** Each column's cast type (TargetColumn.cast_type) for typed unnest() arrays; undefined for arrays. */
  types: Map<string, string | undefined>;
}

export class TargetCatalog {
  private readonly tables = new Map<string, Promise<TargetTable>>();
  private readonly resolved = new Map<string, TargetTable>();

  constructor(private readonly client: pg.Client) {}

  /** After a rollback: what was described (and recorded) inside it is read again. */
  forget(): void {
    this.tables.clear();
    this.resolved.clear();
  }

  /** The table if already described (by its canonical spelling): lets the hot apply path skip an await per change. */
  known(name: string): TargetTable | undefined {
    return this.resolved.get(name);
  }

  /** The table, however it is spelled (src/sql.ts); described under its canonical spelling. */
  table(spelling: string): Promise<TargetTable> {
    const name = tableKey(spelling, 'a target row');
    let table = this.tables.get(name);
    if (!table) {
      table = describe(this.client, name);
      this.tables.set(name, table);
      table.then((t) => this.resolved.set(name, t)).catch(() => {});
      table.catch(() => this.tables.delete(name));
    }
    return table;
  }
}

async function describe(client: pg.Client, name: string): Promise<TargetTable> {
  const table = await readTable(client, name);
  // Remembered so that an interrupted copy can empty what it wrote before starting over.
  await recordTarget(client, name);
  return table;
}

export interface TargetColumn {
  attname: string;
  key: boolean;
  /** As declared, modifier included: varchar(5), timestamp(3) without time zone. */
  type: string;
  /** What a batch's values are cast to: the type without its length or precision. */
  cast_type: string;
  is_array: boolean;
}

/** A target table's columns as the catalog has them (none when it does not exist). */
export async function targetColumns(client: pg.Client, name: string): Promise<TargetColumn[]> {
  const { rows } = await client.query<TargetColumn>(
    `SELECT a.attname,
            -- The key's own columns: a primary key's INCLUDE columns are not part of it.
            coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]), false) AS key,
            format_type(a.atttypid, a.atttypmod) AS type,
            -- An explicit cast to varchar(n) or char(n) cuts a longer value short without a word;
            -- cast to the type without its modifier, the column's own assignment refuses it (and
            -- still rounds timestamp(3), numeric(p,s)). A bare 'bit' would read as bit(1).
            CASE WHEN t.typname = 'bit' THEN 'bit varying' WHEN t.typname = '_bit' THEN 'bit varying[]'
                 ELSE format_type(a.atttypid, -1) END AS cast_type,
            t.typcategory = 'A' AS is_array
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [quoteQualified(name)],
  );
  return rows;
}

/** The error for a target table the new database does not have (with a case-differing spelling). */
export async function missingTargetError(client: pg.Client, name: string): Promise<ImagoError> {
  const label = tableLabel(name);
  return new ImagoError(
    `target table ${label} does not exist in the new database`,
    label,
    await missingTableHint(
      client,
      parseTableName(name),
      'the new version must create its schema before the copy, or fix the table name in the conversion',
    ),
  );
}

/** The error for a target table without a primary key. */
export function keylessTargetError(name: string): ImagoError {
  const label = tableLabel(name);
  return new ImagoError(
    `target table ${label} has no primary key`,
    label,
    'the copy and the stream upsert by primary key; add one to the new schema',
  );
}

async function readTable(client: pg.Client, name: string): Promise<TargetTable> {
  const rows = await targetColumns(client, name);
  if (rows.length === 0) throw await missingTargetError(client, name);
  const key = rows.filter((r) => r.key).map((r) => r.attname);
  if (key.length === 0) throw keylessTargetError(name);
  return {
    name,
    key,
    columns: new Set(rows.map((r) => r.attname)),
    // unnest() flattens arrays of arrays, so array columns take the VALUES path.
    types: new Map(rows.map((r) => [r.attname, r.is_array ? undefined : r.cast_type])),
  };
}

/** The primary key of a target row as a stable string (lineage stores it). */
export function keyOf(table: TargetTable, row: Record<string, TargetValue>): string[] {
  return table.key.map((column) => {
    const value = row[column];
    if (value === undefined || value === null) {
      throw new ImagoError(
        `a row for ${table.name} has no value for primary key column ${column}`,
        table.name,
        'every target row must carry its primary key',
      );
    }
    return String(value);
  });
}

/** Upserts rows of one table with one multi-row statement per batch (same column set). */
export async function upsert(
  client: pg.Client,
  table: TargetTable,
  rows: Record<string, TargetValue>[],
): Promise<void> {
  const groups = new Map<string, Record<string, TargetValue>[]>();
  for (const row of rows) {
    const columns = Object.keys(row);
    for (const c of columns) {
      if (!table.columns.has(c))
        throw new ImagoError(
          `target table ${table.name} has no column ${c}`,
          `${table.name}.${c}`,
          'fix the transform',
        );
    }
    const signature = columns.join('\0');
    const group = groups.get(signature);
    if (group) group.push(row);
    else groups.set(signature, [row]);
  }
  for (const [signature, group] of groups) {
    const columns = signature.split('\0');
    const conflict = conflictClause(table, columns);
    const types = columns.map((c) => table.types.get(c));
    if (group.length >= UNNEST_FROM && types.every((t) => t !== undefined)) {
      // One array parameter per column: far cheaper to bind and parse than one parameter per value.
      const rows = dedupeByKey(table, group);
      await client.query(
        `INSERT INTO ${quoteQualified(table.name)} (${columns.map(quote).join(', ')})
         SELECT * FROM unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')}) ${conflict}`,
        columns.map((c) => rows.map((row) => toParam(row[c]))),
      );
      continue;
    }
    // PostgreSQL allows 65535 parameters per statement.
    const perStatement = Math.max(1, Math.floor(60000 / columns.length));
    for (let start = 0; start < group.length; start += perStatement) {
      const batch = dedupeByKey(table, group.slice(start, start + perStatement));
      const params: unknown[] = [];
      const tuples = batch.map(
        (row) => `(${columns.map((c) => `$${params.push(toParam(row[c]))}`).join(', ')})`,
      );
      await client.query(
        `INSERT INTO ${quoteQualified(table.name)} (${columns.map(quote).join(', ')}) VALUES ${tuples.join(', ')} ${conflict}`,
        params,
      );
    }
  }
}

/** Batches at least this large use typed unnest() arrays rather than a VALUES list. */
const UNNEST_FROM = 16;

export function conflictClause(table: TargetTable, columns: string[]): string {
  const updates = columns
    .filter((c) => !table.key.includes(c))
    .map((c) => `${quote(c)} = EXCLUDED.${quote(c)}`);
  return `ON CONFLICT (${table.key.map(quote).join(', ')}) DO ${updates.length ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}`;
}

/** ON CONFLICT cannot touch one row twice in a statement: the last version of a key wins. */
function dedupeByKey(table: TargetTable, rows: Record<string, TargetValue>[]): Record<string, TargetValue>[] {
  const byKey = new Map<string, Record<string, TargetValue>>();
  for (const row of rows) byKey.set(keyOf(table, row).join('\0'), row);
  return byKey.size === rows.length ? rows : [...byKey.values()];
}

export async function deleteByKey(client: pg.Client, table: TargetTable, key: string[]): Promise<void> {
  const where = table.key.map((c, i) => `${quote(c)} = $${i + 1}`).join(' AND ');
  await client.query(`DELETE FROM ${quoteQualified(table.name)} WHERE ${where}`, key);
}

export function toRows(outputs: TargetRow[]): Map<string, Record<string, TargetValue>[]> {
  const byTable = new Map<string, Record<string, TargetValue>[]>();
  for (const { table, row } of outputs) {
    const rows = byTable.get(table);
    if (rows) rows.push(row);
    else byTable.set(table, [row]);
  }
  return byTable;
}

function toParam(value: TargetValue | undefined): unknown {
  return typeof value === 'bigint' ? value.toString() : (value ?? null);
}

/** Rows grouped by their column list (each group can be written with one statement). */
export function bySignature(
  rows: Record<string, TargetValue>[],
): Map<string[], Record<string, TargetValue>[]> {
  const groups = new Map<string, { columns: string[]; rows: Record<string, TargetValue>[] }>();
  // Rows of one table nearly always share their columns: compare with the previous row's first.
  let previous: { columns: string[]; rows: Record<string, TargetValue>[] } | undefined;
  for (const row of rows) {
    if (previous && hasColumns(row, previous.columns)) {
      previous.rows.push(row);
      continue;
    }
    const columns = Object.keys(row);
    const signature = columns.join('\0');
    previous = groups.get(signature);
    if (previous) previous.rows.push(row);
    else groups.set(signature, (previous = { columns, rows: [row] }));
  }
  return new Map([...groups.values()].map((g) => [g.columns, g.rows]));
}

/** True when `row`'s keys are `columns`, in order; for…in allocates nothing, Object.keys an array per row. */
function hasColumns(row: Record<string, TargetValue>, columns: string[]): boolean {
  let i = 0;
  for (const k in row) if (k !== columns[i++]) return false;
  return i === columns.length;
}
