/**
 * Index builds deferred during the bulk copy (pg_dump's and pgcopydb's order): an empty target
 * table's primary key, unique and exclusion constraints and plain indexes are dropped before its
 * first row is copied and built again, from their exact definitions, once the copy is done — one
 * sort per index instead of a b-tree insertion per row (measured: about half of PostgreSQL's cost of
 * writing the bench's target tables).
 *
 * Safe because the copy is all-or-nothing: a copy interrupted anywhere (even kill -9) starts over
 * with the tables emptied (converter.ts), and the definitions are kept in `imago.deferred_index`,
 * written in the same transaction as the drops, until the transaction that rebuilds them commits.
 * Only tables whose indexes can be put back exactly are deferred: nothing else may depend on their
 * indexes (foreign keys of other tables, replica identity, CLUSTER, partitions, inheritance), and
 * their indexes carry nothing the definitions below would lose (storage parameters, a tablespace,
 * comments, statistics targets).
 */
import type pg from 'pg';
import { connectClient } from '../database.js';
import { settleAll } from '../deadline.js';
import { ImagoError } from '../errors.js';
import { quoteQualified, tableLabel } from '../sql.js';

export const DEFERRED_INDEX_DDL = `CREATE TABLE IF NOT EXISTS imago.deferred_index (
      target text NOT NULL,
      seq int NOT NULL,
      definition text NOT NULL,
      PRIMARY KEY (target, seq)
    );`;

/**
 * Drops `table`'s indexes, recording them, when the table is empty and eligible; true when its
 * indexes are deferred now (also when an earlier, interrupted copy left them deferred).
 */
export async function deferIndexes(client: pg.Client, table: string): Promise<boolean> {
  const relation = quoteQualified(table);
  await client.query('BEGIN');
  try {
    // No writer may slip a row in between the emptiness check and the drop.
    await client.query(`LOCK TABLE ${relation} IN ACCESS EXCLUSIVE MODE`);
    const { rows: state } = await client.query<{ empty: boolean; eligible: boolean; deferred: boolean }>(
      `SELECT NOT EXISTS (SELECT 1 FROM ${relation}) AS empty,
              ${ELIGIBLE} AS eligible,
              EXISTS (SELECT 1 FROM imago.deferred_index WHERE target = $2) AS deferred
         FROM pg_class c WHERE c.oid = $1::regclass`,
      [relation, table],
    );
    const s = state[0];
    if (!s?.empty || !s.eligible) {
      await client.query('ROLLBACK');
      return false;
    }
    const { rows: indexes } = await client.query<{ definition: string; drop: string }>(
      `SELECT ${DEFINITION} AS definition,
              CASE WHEN k.oid IS NULL THEN format('DROP INDEX %s', i.indexrelid::regclass)
                   ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, k.conname) END AS drop
         FROM pg_index i
         LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
        WHERE i.indrelid = $1::regclass
        ORDER BY i.indisprimary DESC, i.indexrelid`,
      [relation],
    );
    if (indexes.length === 0) {
      await client.query('COMMIT');
      return s.deferred;
    }
    // Appended after any left by an interrupted copy (an index added to the schema since is kept too).
    await client.query(
      `INSERT INTO imago.deferred_index (target, seq, definition)
       SELECT $1, coalesce((SELECT max(seq) FROM imago.deferred_index WHERE target = $1), 0) + n, d
         FROM unnest($2::text[]) WITH ORDINALITY AS x(d, n)`,
      [table, indexes.map((i) => i.definition)],
    );
    for (const index of indexes) await client.query(index.drop);
    await client.query('COMMIT');
    return true;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Tables whose indexes are deferred (left by a copy that has not finished, or in progress); none in a
 * database conversion has not prepared yet.
 */
export async function deferredTables(client: pg.Client): Promise<string[]> {
  const { rows: schema } = await client.query<{ ready: boolean }>(
    `SELECT to_regclass('imago.deferred_index') IS NOT NULL AS ready`,
  );
  if (!schema[0]?.ready) return [];
  const { rows } = await client.query<{ target: string }>(
    'SELECT DISTINCT target FROM imago.deferred_index ORDER BY target',
  );
  return rows.map((r) => r.target);
}

/**
 * Thrown when a deferred unique index cannot be built: the copy wrote the same key twice. Either an
 * N:1 transform did (several source rows, one target row: the copy with the index in place turns
 * them into upserts) or the old data has duplicates the new schema refuses (that copy names the
 * source row). Which one cannot be told from the index alone, so the message says both.
 */
export class DuplicateKeysError extends ImagoError {
  constructor(
    readonly table: string,
    cause: unknown,
  ) {
    const { constraint, detail } = cause as { constraint?: string; detail?: string };
    super(
      `the bulk copy wrote the same key twice into ${tableLabel(table)}, so its unique index${constraint ? ` ${constraint}` : ''} could not be built${detail ? ` (${detail})` : ''}`,
      table,
      'copying again with the indexes in place: rows of an N:1 transform become upserts, and a row the new schema refuses is named with its source row',
      { cause },
    );
    this.name = 'DuplicateKeysError';
  }
}

/**
 * Builds `table`'s deferred indexes again, in one transaction that also forgets them. `onLocked`
 * runs once the table is locked: every write begun before has committed, every later one waits for
 * the indexes (and may then meet a conflict).
 */
export async function restoreIndexes(client: pg.Client, table: string, onLocked = () => {}): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`LOCK TABLE ${quoteQualified(table)} IN ACCESS EXCLUSIVE MODE`);
    onLocked();
    const { rows } = await client.query<{ definition: string }>(
      'SELECT definition FROM imago.deferred_index WHERE target = $1 ORDER BY seq FOR UPDATE',
      [table],
    );
    for (const { definition } of rows) await client.query(definition);
    await client.query('DELETE FROM imago.deferred_index WHERE target = $1', [table]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    if ((err as { code?: string }).code === '23505') throw new DuplicateKeysError(table, err);
    throw err;
  }
}

/**
 * Builds the deferred indexes of `tables` (default: every table left deferred), each table in its own
 * transaction on its own connection, so that the new database builds them side by side.
 */
export async function restoreDeferred(
  url: string,
  tables?: string[],
  onLocked: (table: string) => void = () => {},
): Promise<void> {
  const connect = () => connectClient(url, 'new');
  if (!tables) {
    const client = await connect();
    tables = await deferredTables(client).finally(() => client.end().catch(() => {}));
  }
  await settleAll(
    tables.map(async (table) => {
      const client = await connect();
      try {
        await restoreIndexes(client, table, () => onLocked(table));
      } finally {
        await client.end().catch(() => {});
      }
    }),
  );
}

/** What CREATE INDEX / ADD CONSTRAINT needs to rebuild the index as it was (`i`, `k` as above). */
const DEFINITION = `CASE WHEN k.oid IS NULL THEN pg_get_indexdef(i.indexrelid)
  ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s', i.indrelid::regclass, k.conname, pg_get_constraintdef(k.oid)) END`;

/** True for a table (`c`) whose indexes the definitions above rebuild exactly and nothing else needs. */
const ELIGIBLE = `(c.relkind = 'r' AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid OR h.inhparent = c.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.oid)
  AND NOT EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = c.oid
       AND (NOT i.indisvalid OR NOT i.indisready OR i.indisreplident OR i.indisclustered
            OR ic.reloptions IS NOT NULL OR ic.reltablespace <> 0
            OR obj_description(i.indexrelid, 'pg_class') IS NOT NULL
            OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = c.oid
                        AND obj_description(k.oid, 'pg_constraint') IS NOT NULL)
            OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid
                        AND coalesce(a.attstattarget, -1) <> -1))))`;
