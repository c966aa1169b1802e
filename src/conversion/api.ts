/**
 * The conversion API users write against: per source table, a function from one source row to zero
 * or more target rows (1:N). Imago keeps the lineage (source row → the target rows it produced), so
 * an update replaces exactly those rows and a delete removes them. Lookups into the target database
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

export type TableConversion = (
  | { transform(row: Row, ctx: TransformContext): TargetRow[] | Promise<TargetRow[]> }
  /** Copied unchanged, into the table of the same name or `table`; needs no lineage. */
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
