/**
 * Before the new universe takes writes, every sequence behind a converted column is brought past the
 * largest converted value; otherwise the new version's first inserts would collide with converted rows.
 */
import type pg from 'pg';

export async function bringSequencesPast(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ seq: string; tbl: string; col: string }>(
    `SELECT s.oid::regclass::text AS seq, t.oid::regclass::text AS tbl, quote_ident(a.attname) AS col
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_class t ON t.oid = d.refobjid
       JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname NOT IN ('imago', 'pg_catalog', 'information_schema')
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`,
  );
  for (const { seq, tbl, col } of rows) {
    await client.query(
      `SELECT setval($1::regclass, m) FROM (SELECT max(${col})::bigint AS m FROM ${tbl}) x
        WHERE m IS NOT NULL AND m > (SELECT last_value FROM ${seq})`,
      [seq],
    );
  }
  return rows.length;
}
