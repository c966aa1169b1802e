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
import type { SourceTable } from '../capture/publication.js';
import { quote, quoteQualified, type TargetCatalog, type TargetTable } from './target.js';

export class KeyedLineage {
  /** Target tables checked (types, index) once, with their key columns' SQL types. */
  private readonly checked = new Map<string, string[]>();

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
      const types = await this.check(target, columns);
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

  /**
   * Once per table: its key columns' types can be compared, and each read is an index lookup (or the
   * table would be scanned per change: refused, with the fix). Returns the key columns' SQL types.
   */
  private async check(target: TargetTable, columns: string[]): Promise<string[]> {
    const known = this.checked.get(target.name);
    if (known) return known;
    const types = columns.map((c) => columnType(target, c));
    for (const c of target.key) comparableType(target, c);
    const { rows } = await this.client.query<{ ok: boolean }>(
      `SELECT EXISTS (
         SELECT 1 FROM pg_index i
          WHERE i.indrelid = to_regclass($1) AND i.indpred IS NULL AND i.indisvalid AND i.indisready
            AND i.indnkeyatts >= $3
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
    this.checked.set(target.name, types);
    return types;
  }
}

function columnType(target: TargetTable, column: string): string {
  if (!target.columns.has(column))
    throw new ImagoError(
      `sourceKeyIn names ${target.name}.${column}, which the new database does not have`,
      `${target.name}.${column}`,
      'name the columns of the target table that hold the source key',
    );
  return comparableType(target, column);
}

/**
 * What a transform produced is compared with what the database holds as text, so a key column must
 * have one text form per value; for these types it is computed here (canonical), for others (numeric
 * `1.5` / `1.50`, timestamps, booleans, `varchar(n)` cutting trailing spaces) the comparison could
 * miss and delete a row just written.
 */
type Family = 'integer' | 'text' | 'uuid';
const TARGET_FAMILIES: [RegExp, Family][] = [
  [/^(smallint|integer|bigint)$/, 'integer'],
  [/^(text|character varying)$/, 'text'],
  [/^uuid$/, 'uuid'],
];
/** A source key's text is what its column holds: a bounded varchar is fine there. */
const SOURCE_FAMILIES: [RegExp, Family][] = [...TARGET_FAMILIES, [/^character varying\(\d+\)$/, 'text']];
const CANONICAL: Record<Family, (v: string) => string> = {
  integer: canonicalInteger,
  text: (v) => v,
  uuid: canonicalUuid,
};

const familyOf = (type: string, families = TARGET_FAMILIES): Family | undefined =>
  families.find(([re]) => re.test(type))?.[1];

function comparableType(target: TargetTable, column: string): string {
  const type = target.types.get(column) ?? 'an array type';
  if (familyOf(type) === undefined)
    throw new ImagoError(
      `${target.name}.${column} is ${type}: sourceKeyIn needs the listed tables' key columns and primary keys to be integers, text (unbounded) or uuid`,
      `${target.name}.${column}`,
      'leave sourceKeyIn out for this table: its lineage is then stored',
    );
  return type;
}

/**
 * Before a keyed table is copied: each listed column holds its source key column's values as they
 * are (same family of types: '01' from a text key would become 1 in an integer and share rows with
 * '1'), and the listed tables' keys can be compared.
 */
export function checkKeyedTypes(source: SourceTable, target: TargetTable, columns: string[]): void {
  for (const c of target.key) comparableType(target, c);
  columns.forEach((column, i) => {
    const type = columnType(target, column);
    const sourceColumn = source.key[i] as string;
    const sourceType = source.types.get(sourceColumn) ?? 'unknown';
    if (familyOf(sourceType, SOURCE_FAMILIES) !== familyOf(type))
      throw new ImagoError(
        `${target.name}.${column} is ${type} but the source key column ${source.name}.${sourceColumn} it holds is ${sourceType}: the values would not compare as they are`,
        `${target.name}.${column}`,
        `give ${target.name}.${column} a type of the same kind as ${source.name}.${sourceColumn} (integer, text or uuid), or leave sourceKeyIn out for this table`,
      );
  });
}

/** A target key as PostgreSQL prints it (what read() returns), from the values a transform produced. */
export function canonicalKey(target: TargetTable, key: string[]): string[] {
  return key.map((v, i) => {
    const family = familyOf(target.types.get(target.key[i] as string) ?? '');
    return family ? CANONICAL[family](v) : v;
  });
}

/** As PostgreSQL (16 and later) reads an integer: sign, 0x / 0o / 0b prefixes, `_` between digits. */
function canonicalInteger(v: string): string {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)\s*$/.exec(v);
  if (!m) return v;
  try {
    const n = BigInt((m[2] as string).replace(/_/g, ''));
    return (m[1] === '-' ? -n : n).toString();
  } catch {
    return v; // PostgreSQL refuses it too: the write fails before any comparison matters
  }
}

function canonicalUuid(v: string): string {
  const hex = v.replace(/[{}-]/g, '').toLowerCase();
  return /^[0-9a-f]{32}$/.test(hex)
    ? `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
    : v;
}
