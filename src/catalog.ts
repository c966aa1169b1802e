/**
 * Tables a plan or a transform names, looked up in a database's catalog. Names are matched as
 * PostgreSQL stores them (src/sql.ts), so a table spelled `user` is not `User`: when no table has the
 * name, a table whose name differs only in case is offered in the hint — the mistake the naming rule
 * makes likely for anyone used to SQL's folding.
 */
import type pg from 'pg';
import { tableKey, type TableName } from './sql.js';

/** The hint for a table not found: a spelling that differs only in case, else `otherwise`. */
export async function missingTableHint(
  client: pg.Client,
  table: TableName,
  otherwise: string,
): Promise<string> {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE lower(n.nspname) = lower($1) AND lower(c.relname) = lower($2) AND c.relkind IN ('r', 'p')
      ORDER BY 1, 2 LIMIT 3`,
    [table.schema, table.name],
  );
  if (rows.length === 0) return otherwise;
  const names = rows.map((r) => tableKey(r)).join(' or ');
  return `did you mean ${names}? Table names are matched as PostgreSQL stores them, case included`;
}
