/**
 * The conversion API users write against: per source table, a function from one source row to zero
 * or more target rows (1:N). Imago keeps the lineage (source row → the target rows it produced), so
 * an update replaces exactly those rows and a delete removes them: stored per source row, or read
 * from the target rows themselves where they carry the source key (`sourceKeyIn`). Lookups into the target database
 * serve N:1 cases (a revision finds its page by title).
 *
 * Source values arrive in PostgreSQL's text form (`'42'`, `'2026-11-23 10:00:00.123456+00'`, NULL as
 * null); target values may be strings, numbers, booleans or null and are cast by the target column.
 * Every target row must carry its table's primary key, so that replaying a change is idempotent.
 */
import type { Row } from '../capture/change.js';

export type { Row };
export type TargetValue = string | number | bigint | boolean | null;

export interface TargetRow {
  table: string;
  row: Record<string, TargetValue>;
}

export interface TransformContext {
  /** One target row whose columns equal `where`, read inside the current conversion transaction. */
  lookup(table: string, where: Record<string, TargetValue>): Promise<Row | undefined>;
}

/**
 * What an inverse reads: the new database (the reverse stream's source), inside the reverse
 * applier's transaction. It sees the new database's current state, which may be ahead of the change
 * being applied; every later change re-triggers the rows it touches, so once the reverse stream has
 * applied a rollback's fence the old database equals the inverse of the new one (docs/rollback.md).
 */
export interface InverseContext {
  /** One row of the new database's `table` whose columns equal `where` (undefined: none). */
  read(table: string, where: Record<string, TargetValue>): Promise<Row | undefined>;
  /** Every row of the new database's `table` whose columns equal `where`. */
  readAll(table: string, where: Record<string, TargetValue>): Promise<Row[]>;
}

/** An old table's key: its primary key's columns and values. */
export type OldKey = Record<string, TargetValue>;

/**
 * How the rows of this (old) table are rebuilt from the new database, for a rollback after the
 * switch. State-based, not change-based: a change of a new row says which old rows it touches
 * (`from`), and each touched old row is computed again from the new database (`row`) — upserted if
 * it exists, deleted if not. No lineage is needed, so rows converted before the switch roll back too.
 * Fields `row` cannot restore are reported by `imago plan` (a round trip of sampled rows).
 */
export interface TableInverse {
  /** The old table's primary-key columns, in order. */
  key: string[];
  /**
   * Per new table, the keys of the old rows of this table that a changed new row touches. Called
   * with the change's new image and its old image (a delete's old image may carry only the new
   * table's key columns, unless that table has REPLICA IDENTITY FULL).
   */
  from: Record<string, (row: Row, ctx: InverseContext) => OldKey[] | Promise<OldKey[]>>;
  /** The old row for `key`, read from the new database; undefined when it does not exist there. */
  row(
    key: OldKey,
    ctx: InverseContext,
  ): Record<string, TargetValue> | undefined | Promise<Record<string, TargetValue> | undefined>;
}

export type TableConversion = (
  | {
      transform(row: Row, ctx: TransformContext): TargetRow[] | Promise<TargetRow[]>;
      /**
       * The transform's inverse, for a rollback after the switch (see TableInverse). Without it,
       * this table cannot be rolled back, and `imago plan` says so.
       */
      inverse?: TableInverse;
      /**
       * Where the target rows carry this source row's key: target table → its columns that hold the
       * source key's values, in key order (`{ person: ['id'], person_tag: ['person_id'] }`). Imago then
       * finds what a source row produced through those columns instead of storing a lineage row per
       * source row (on a 1:N bulk copy, the lineage is the widest thing written). What it promises is
       * checked as rows convert: every output goes to one of these tables, with these columns equal
       * to the source key, and no other source table writes to them. Each table needs an index whose
       * leading columns are these (a primary key or foreign-key index usually is one), and their keys
       * must be integers, text or uuid. Every row of these tables counts as this source table's, rows
       * the new version writes there itself too: leave it out for tables the new version writes.
       * List the tables in the order the transform produces them: on a delete, later ones go first.
       */
      sourceKeyIn?: Record<string, string[]>;
    }
  /**
   * Copied unchanged, into the table of the same name or `table`; needs no lineage. Its inverse is
   * implied: the new table's rows copied back unchanged.
   */
  | { identity: true; table?: string }
) & {
  /**
   * Source tables whose bulk copy must finish before this one's starts (its lookups read their
   * output). Default: none for identity tables; every table listed before it for transforms.
   * Only matters when the copy runs tables in parallel.
   */
  after?: string[];
};

export interface Conversion {
  /**
   * Source tables and how each converts. The bulk copy converts them in this order, so a table whose
   * transform looks up rows produced by another must come after it.
   */
  tables: Record<string, TableConversion>;
}

export function defineConversion(conversion: Conversion): Conversion {
  return conversion;
}

/** A table copied unchanged (optionally under another name). */
export function identity(table?: string, options: { after?: string[] } = {}): TableConversion {
  return table === undefined ? { identity: true, ...options } : { identity: true, table, ...options };
}
