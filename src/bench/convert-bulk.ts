/**
 * Bulk conversion against PostgreSQL's own reference: (a) a raw `COPY … TO STDOUT | COPY … FROM STDIN`
 * pipe between the two clusters, and (b) Imago's snapshot copy with a non-trivial transform (rename,
 * computed column, 1:N split) — on the same generated rows, in the same run.
 */
import pg from 'pg';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { Converter } from '../conversion/converter.js';
import { defineConversion, type TargetRow } from '../conversion/api.js';
import { createDatabase, type Cluster } from '../universe/cluster.js';
import { ImagoError } from '../errors.js';

const SOURCE_DDL = `CREATE TABLE item (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12, 2), created timestamptz, tags text)`;

/**
 * How the bulk conversion keeps its lineage: `keyed` (the default) reads it from the target rows,
 * which carry the item's id (`sourceKeyIn`); `stored` writes a lineage row per item, as a transform
 * whose outputs do not carry the source key needs.
 */
export type BulkLineage = 'keyed' | 'stored';

export function parseBulkLineage(value: unknown): BulkLineage {
  if (value === undefined || value === 'keyed') return 'keyed';
  if (value === 'stored') return 'stored';
  throw new ImagoError(`expected "keyed" or "stored", not ${String(value)}`, 'lineage');
}

export const bulkConversion = (lineage: BulkLineage) =>
  defineConversion({
    tables: {
      item: {
        ...(lineage === 'keyed' ? { sourceKeyIn: { product: ['id'], product_tag: ['product_id'] } } : {}),
        transform: (row): TargetRow[] => [
          {
            table: 'product',
            row: {
              id: row.id ?? null,
              title: row.name ?? null, // rename
              price_cents:
                row.price === null || row.price === undefined ? null : Math.round(Number(row.price) * 100), // computed
              created: row.created ?? null,
            },
          },
          // 1:N: one row per tag
          ...(row.tags ?? '')
            .split(',')
            .map((tag, n) => ({ table: 'product_tag', row: { product_id: row.id ?? null, n, tag } })),
        ],
      },
    },
  });

export async function seedBulk(oldCluster: Cluster, rows: number): Promise<string> {
  const url = await createDatabase(oldCluster, 'bulk');
  const client = new pg.Client(url);
  await client.connect();
  await client.query(SOURCE_DDL);
  await client.query(
    `INSERT INTO item SELECT g, 'item ' || g, (g % 10000) / 100.0, '2026-01-01'::timestamptz + g * interval '1 second',
       CASE WHEN g % 2 = 0 THEN 'red,blue' ELSE 'green' END FROM generate_series(1, $1) g`,
    [rows],
  );
  await client.query('ANALYZE item');
  await client.end();
  return url;
}

/** Seconds for a raw COPY pipe of the source table into an identical empty table. */
export async function rawCopySeconds(sourceUrl: string, newCluster: Cluster, run: number): Promise<number> {
  const url = await createDatabase(newCluster, `raw${run}`);
  const source = new pg.Client(sourceUrl);
  const target = new pg.Client(url);
  await Promise.all([source.connect(), target.connect()]);
  try {
    await target.query(SOURCE_DDL);
    const started = performance.now();
    await pipeline(
      source.query(copyTo('COPY item TO STDOUT')),
      target.query(copyFrom('COPY item FROM STDIN')),
    );
    return (performance.now() - started) / 1000;
  } finally {
    await Promise.all([source.end(), target.end()]);
  }
}

/** Seconds for Imago's snapshot copy + transform of the same table (slot creation excluded). */
export async function imagoCopySeconds(
  sourceUrl: string,
  newCluster: Cluster,
  run: number,
  lineage: BulkLineage,
): Promise<{ seconds: number; targetRows: number }> {
  const url = await createDatabase(newCluster, `imago${run}`);
  const target = new pg.Client(url);
  await target.connect();
  await target.query(`CREATE TABLE product (id bigint PRIMARY KEY, title text NOT NULL, price_cents int, created timestamptz);
    CREATE TABLE product_tag (product_id bigint, n int, tag text NOT NULL, PRIMARY KEY (product_id, n));`);
  await target.end();
  const converter = new Converter({
    sourceUrl,
    targetUrl: url,
    conversion: bulkConversion(lineage),
    name: `bench_bulk_${run}`,
  });
  try {
    await converter.prepare();
    const started = performance.now();
    const result = await converter.copy();
    return { seconds: (performance.now() - started) / 1000, targetRows: result.targetRows };
  } finally {
    await converter.stop({ dropCapture: true });
  }
}
