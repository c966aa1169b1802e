/**
 * Before the new universe takes writes, every sequence behind a converted column is brought past the
 * largest converted value; otherwise the new version's first inserts would collide with converted rows.
 * Names come from the catalog as stored (an ORM's "User", "User_id_seq", "createdAt") and are
 * rendered by src/sql.ts like every other identifier.
 */
import type pg from 'pg';
import { quoteIdent, quoteQualified } from '../sql.js';

export async function bringSequencesPast(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{
    seq_schema: string;
    seq: string;
    tbl_schema: string;
    tbl: string;
    col: string;
  }>(
    `SELECT sn.nspname AS seq_schema, s.relname AS seq, n.nspname AS tbl_schema, t.relname AS tbl, a.attname AS col
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_namespace sn ON sn.oid = s.relnamespace
       JOIN pg_class t ON t.oid = d.refobjid
       JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname NOT IN ('imago', 'pg_catalog', 'information_schema')
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`,
  );
  for (const r of rows) {
    const seq = quoteQualified({ schema: r.seq_schema, name: r.seq });
    const tbl = quoteQualified({ schema: r.tbl_schema, name: r.tbl });
    await client.query(
      `SELECT setval($1::regclass, m) FROM (SELECT max(${quoteIdent(r.col)})::bigint AS m FROM ${tbl}) x
        WHERE m IS NOT NULL AND m > (SELECT last_value FROM ${seq})`,
      [seq],
    );
  }
  return rows.length;
}
