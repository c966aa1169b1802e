/**
 * Lineage read from the target rows themselves, for source tables whose transform puts the source
 * key in known columns (api.ts, `sourceKeyIn`): what a source row produced is the rows of those
 * tables whose key columns hold its key. Nothing is stored per source row, so the bulk copy writes no
 * lineage at all; RowConverter checks, row by row, that the promise behind this holds.
 */
import type pg from 'pg';
import { ImagoError } from '../errors.js';
import type { Targets } from './lineage.js';
import type { KeyedTarget } from './row-converter.js';
import { quote, quoteQualified, type TargetCatalog, type TargetTable } from './target.js';

export class KeyedLineage {
  /** Target tables whose index on the key columns has been checked. */
  private readonly indexed = new Set<string>();

  constructor(
    private readonly client: pg.Client,
    private readonly catalog: TargetCatalog,
  ) {}

  /**
   * What each source row (by RowConverter.keyOf) produced: the tables in sourceKeyIn's order, rows
   * by primary key. Every key asked for is in the answer, [] when it produced nothing.
   */
  async read(keyed: KeyedTarget[], sourceKeys: readonly string[]): Promise<Map<string, Targets>> {
    const found = new Map<string, Targets>(sourceKeys.map((k) => [k, []]));
    if (sourceKeys.length === 0) return found;
    const values = sourceKeys.map((k) => JSON.parse(k) as (string | null)[]);
    for (const { table, columns } of keyed) {
      const target = await this.catalog.table(table);
      await this.checkIndex(target, columns);
      const types = columns.map((c) => columnType(target, c));
      const keys = columns.map((_, c) => `k${c}`);
      const { rows } = await this.client.query<{ i: number; pk: string[] }>(
        `SELECT k.i::int AS i, ARRAY[${target.key.map((c) => `t.${quote(c)}::text`).join(', ')}] AS pk
           FROM unnest(${types.map((type, c) => `$${c + 1}::${type}[]`).join(', ')}, $${columns.length + 1}::int[])
                AS k(${keys.join(', ')}, i)
           JOIN ${quoteQualified(table)} t ON ${columns.map((c, n) => `t.${quote(c)} = k.k${n}`).join(' AND ')}
          ORDER BY k.i, ${target.key.map((c) => `t.${quote(c)}`).join(', ')}`,
        [...columns.map((_, c) => values.map((v) => v[c] ?? null)), sourceKeys.map((_, i) => i)],
      );
      for (const row of rows) found.get(sourceKeys[row.i] as string)?.push([table, row.pk]);
    }
    return found;
  }

  /** Everything a source table produced is gone (its TRUNCATE): the keyed tables hold only its rows. */
  async truncate(keyed: KeyedTarget[]): Promise<void> {
    // Later tables first: rows that refer to others go before them.
    for (const { table } of [...keyed].reverse())
      await this.client.query(`DELETE FROM ${quoteQualified(table)}`);
  }

  /** Each read is an index lookup, or the table is scanned per change: refused, with the fix. */
  private async checkIndex(target: TargetTable, columns: string[]): Promise<void> {
    if (this.indexed.has(target.name)) return;
    const { rows } = await this.client.query<{ ok: boolean }>(
      `SELECT EXISTS (
         SELECT 1 FROM pg_index i
          WHERE i.indrelid = to_regclass($1) AND i.indpred IS NULL AND i.indnkeyatts >= $3
            AND (SELECT array_agg(x ORDER BY x) FROM unnest((i.indkey::int2[])[0:$3 - 1]) x)
              = (SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attname = ANY ($2::text[]))
       ) AS ok`,
      [quoteQualified(target.name), columns, columns.length],
    );
    if (!rows[0]?.ok)
      throw new ImagoError(
        `target table ${target.name} has no index leading with ${columns.join(', ')}, which sourceKeyIn reads it by`,
        `${target.name}(${columns.join(', ')})`,
        `create one in the new schema: CREATE INDEX ON ${quoteQualified(target.name)} (${columns.map(quote).join(', ')})`,
      );
    this.indexed.add(target.name);
  }
}

function columnType(target: TargetTable, column: string): string {
  const type = target.types.get(column);
  if (!target.columns.has(column) || type === undefined)
    throw new ImagoError(
      target.columns.has(column)
        ? `sourceKeyIn names ${target.name}.${column}, an array column: it cannot hold a source key`
        : `sourceKeyIn names ${target.name}.${column}, which the new database does not have`,
      `${target.name}.${column}`,
      'name the columns of the target table that hold the source key',
    );
  return type;
}
