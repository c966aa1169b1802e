/**
 * Turns one source row into its target rows through the user's transform (or the identity shortcut),
 * and names what went wrong when a transform throws: table, key and error, with the way to resume.
 */
import { ImagoError, errorMessage } from '../errors.js';
import type { SourceTable } from '../capture/publication.js';
import type { Row } from '../capture/change.js';
import type { Conversion, TargetRow, TargetValue, TransformContext } from './api.js';
import { quoteQualified, tableKey, tableLabel } from '../sql.js';

export class TransformError extends ImagoError {
  constructor(
    readonly table: string,
    readonly key: string,
    cause: unknown,
  ) {
    super(
      `the transform of ${table} failed on the row with key ${key}: ${errorMessage(cause)}`,
      `${table} ${key}`,
      'fix the transform; conversion stopped at this row with nothing half-applied, and resumes from it',
      { cause },
    );
    this.name = 'TransformError';
  }
}

/** A target table whose rows carry their source row's key (TableConversion.sourceKeyIn). */
export interface KeyedTarget {
  table: string;
  /** The columns holding the source key's values, in key order. */
  columns: string[];
}

interface ResolvedTable {
  source: SourceTable;
  /** Set when the target rows carry the source key: lineage is read from them, never stored. */
  keyedBy?: KeyedTarget[];
  keyedColumns?: Map<string, string[]>;
  /** Set for tables copied unchanged: the target table's name. */
  identityTarget?: string;
  transform?: (row: Row, ctx: TransformContext) => TargetRow[] | Promise<TargetRow[]>;
  after: string[];
}

export class RowConverter {
  private readonly tables = new Map<string, ResolvedTable>();
  /** Keyed target table → the source table whose rows alone it holds. */
  private readonly owners = new Map<string, string>();

  constructor(conversion: Conversion, sources: SourceTable[]) {
    // Every spelling of a table (`User`, `"User"`, `public."User"`) means one table, keyed by its
    // canonical spelling (src/sql.ts) here and everywhere after.
    const order = tableKeys(conversion);
    const after = (list: string[]) => list.map((t) => tableKey(t, 'after'));
    for (const source of sources) {
      const name = tableKey(source);
      const at = order.indexOf(name);
      const spec = at === -1 ? undefined : Object.values(conversion.tables)[at];
      if (!spec) continue;
      const earlier = order.slice(0, at);
      if ('identity' in spec) {
        const identityTarget =
          spec.table === undefined ? name : tableKey(spec.table, `${name}'s identity table`);
        this.tables.set(name, { source, identityTarget, after: after(spec.after ?? []) });
        continue;
      }
      const keyedBy = spec.sourceKeyIn && this.keyed(name, source, spec.sourceKeyIn);
      this.tables.set(name, {
        source,
        transform: spec.transform.bind(spec),
        after: spec.after ? after(spec.after) : earlier,
        ...(keyedBy
          ? // Keyed by the spelling sourceKeyIn uses: lineage read back is named that way, and must
            // compare equal to what the transform produced.
            { keyedBy, keyedColumns: new Map(keyedBy.map((k) => [k.table, k.columns])) }
          : {}),
      });
    }
    for (const [name, t] of this.tables) {
      const owner = t.identityTarget === undefined ? undefined : this.owners.get(t.identityTarget);
      if (owner !== undefined)
        throw new ImagoError(
          `${name} is copied unchanged into ${t.identityTarget}, whose rows ${owner}'s sourceKeyIn says are all ${owner}'s`,
          `${owner}.sourceKeyIn`,
          'a table named in sourceKeyIn takes rows from that one source table only',
        );
    }
  }

  /** Validates a table's sourceKeyIn against its source key, and records which tables it owns. */
  private keyed(name: string, source: SourceTable, spec: Record<string, string[]>): KeyedTarget[] {
    const keyed = Object.entries(spec).map(([table, columns]) => ({
      table: tableKey(table, `${name}.sourceKeyIn`),
      columns,
    }));
    for (const { table, columns } of keyed) {
      if (!Array.isArray(columns) || columns.length !== source.key.length)
        throw new ImagoError(
          `${name}.sourceKeyIn names ${Array.isArray(columns) ? columns.length : 'no'} column(s) of ${table}, but ${name}'s key has ${source.key.length} (${source.key.join(', ')})`,
          `${name}.sourceKeyIn.${table}`,
          `list the ${table} columns that hold ${source.key.join(', ')}, in that order`,
        );
      const other = this.owners.get(table);
      if (other !== undefined)
        throw new ImagoError(
          other === name
            ? `${name}.sourceKeyIn names ${table} twice (spelled two ways)`
            : `${table} is in the sourceKeyIn of both ${other} and ${name}`,
          `${name}.sourceKeyIn.${table}`,
          'a table named in sourceKeyIn takes rows from one source table only; drop it from one of them',
        );
      this.owners.set(table, name);
    }
    return keyed;
  }

  /**
   * How each transform table keeps its lineage: `stored`, or `keyed` and its sourceKeyIn. A resumed
   * conversion must keep what its copy started with (Converter.prepare checks).
   */
  lineageModes(): Map<string, string> {
    const modes = new Map<string, string>();
    for (const [name, t] of this.tables)
      if (t.identityTarget === undefined)
        modes.set(name, t.keyedBy ? `keyed ${JSON.stringify(t.keyedBy)}` : 'stored');
    return modes;
  }

  /** Where the table's target rows carry its key (lineage read from them), or undefined (stored). */
  keyedBy(table: string): KeyedTarget[] | undefined {
    return this.tables.get(table)?.keyedBy;
  }

  /** Tables whose bulk copy must be finished before this one's starts. */
  after(table: string): string[] {
    return (this.tables.get(table)?.after ?? []).filter((t) => this.tables.has(t));
  }

  /** Source tables in conversion order. */
  tableNames(): string[] {
    return [...this.tables.keys()];
  }

  has(table: string): boolean {
    return this.tables.has(table);
  }

  /** Throws when the stream carries a table the conversion does not know (nothing may be dropped silently). */
  expect(table: string): void {
    if (!this.tables.has(table)) {
      throw new ImagoError(
        `the change stream carries changes of ${table}, which the conversion does not convert`,
        table,
        'add the table to the conversion, or remove it from the publication',
      );
    }
  }

  source(table: string): SourceTable {
    const t = this.tables.get(table);
    if (!t) throw new Error(`table ${table} is not converted`);
    return t.source;
  }

  /** The target table of an identity conversion, or undefined when the table has a transform. */
  identityTarget(table: string): string | undefined {
    return this.tables.get(table)?.identityTarget;
  }

  /** The source row's key as a stable string (JSON array of its key values). */
  keyOf(table: string, row: Row): string {
    const { key } = this.source(table);
    // The common single-column key without the array (the bulk copy asks once per row).
    if (key.length === 1) return `[${JSON.stringify(row[key[0] as string] ?? null)}]`;
    return JSON.stringify(key.map((c) => row[c] ?? null));
  }

  /**
   * The target rows of one source row. Synchronous when the transform is (no promise per row on the
   * bulk copy's hot path); errors of either kind become a TransformError naming table and key.
   */
  convert(table: string, row: Row, ctx: TransformContext): TargetRow[] | Promise<TargetRow[]> {
    const t = this.tables.get(table);
    if (!t) return [];
    if (t.identityTarget !== undefined) {
      // Unchanged TOAST values (undefined) are left out, so the target keeps what it has.
      const copy: Record<string, TargetValue> = {};
      for (const k in row) if (row[k] !== undefined) copy[k] = row[k] as TargetValue;
      return [{ table: t.identityTarget, row: copy }];
    }
    for (const k in row) {
      if (row[k] === undefined) {
        throw new ImagoError(
          `an update of ${table} left a large (TOASTed) value unchanged, so PostgreSQL did not send it and the transform cannot see the whole row`,
          `${table} ${this.keyOf(table, row)}`,
          `run on the old database: ALTER TABLE ${quoteQualified(table)} REPLICA IDENTITY FULL`,
        );
      }
    }
    try {
      const out = (t.transform as NonNullable<ResolvedTable['transform']>)(row, ctx);
      return out instanceof Promise
        ? out.then(
            (o) => this.checked(table, row, o),
            (err: unknown) => this.fail(table, row, err),
          )
        : this.checked(table, row, out);
    } catch (err) {
      return this.fail(table, row, err);
    }
  }

  // Methods rather than closures made per call: the copy converts hundreds of thousands of rows.
  private checked(table: string, row: Row, out: unknown): TargetRow[] {
    if (!Array.isArray(out)) {
      const what = out === null ? 'null' : typeof out;
      this.fail(table, row, new Error(`the transform returned ${what}, not an array of target rows`));
    }
    const outputs = out as TargetRow[];
    // One spelling per table from here on (lineage, write batches, the catalog): cached, so cheap.
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i] as TargetRow;
      const key = typeof o?.table === 'string' ? tableKey(o.table) : undefined;
      if (key === undefined)
        this.fail(table, row, new Error(`output ${i} names no table (expected { table, row })`));
      if (key !== o.table) o.table = key;
    }
    if (this.owners.size > 0) this.checkKeyed(table, row, outputs);
    return outputs;
  }

  /** What sourceKeyIn promises, checked per output: nothing is written that its lineage would miss. */
  private checkKeyed(table: string, row: Row, outputs: TargetRow[]): void {
    const t = this.tables.get(table) as ResolvedTable;
    const key = t.source.key;
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i] as TargetRow;
      const columns = t.keyedColumns?.get(o.table);
      if (columns === undefined) {
        const owner = this.owners.get(o.table);
        if (t.keyedColumns)
          this.fail(
            table,
            row,
            new Error(`it produced a row for ${o.table}, which is not in its sourceKeyIn`),
          );
        if (owner !== undefined)
          this.fail(
            table,
            row,
            new Error(
              `it produced a row for ${o.table}, whose rows ${owner}'s sourceKeyIn says are all ${owner}'s`,
            ),
          );
        continue;
      }
      for (let c = 0; c < columns.length; c++) {
        const value = o.row[columns[c] as string];
        const expected = row[key[c] as string];
        if (value === null || value === undefined || String(value) !== expected)
          this.fail(
            table,
            row,
            new Error(
              `its ${o.table} row has ${columns[c]} = ${value === undefined ? 'nothing' : JSON.stringify(value)}, not the source row's ${key[c]} (${JSON.stringify(expected)}), which sourceKeyIn promises`,
            ),
          );
      }
    }
  }

  private fail(table: string, row: Row, err: unknown): never {
    throw new TransformError(table, this.keyOf(table, row), err);
  }
}

/**
 * The conversion's source tables by canonical name, in its order. Two spellings of one table
 * (`User` and `"User"`) are refused: one of the two transforms would be ignored.
 */
export function tableKeys(conversion: Conversion): string[] {
  const seen = new Map<string, string>();
  for (const spelling of Object.keys(conversion.tables)) {
    const key = tableKey(spelling, "the conversion's tables");
    const first = seen.get(key);
    if (first !== undefined)
      throw new ImagoError(
        `the conversion names table ${tableLabel(key)} twice: '${first}' and '${spelling}'`,
        spelling,
        'both spellings mean the same table (names are read as PostgreSQL stores them); keep one entry',
      );
    seen.set(key, spelling);
  }
  return [...seen.keys()];
}
