/**
 * The publication limits the change stream to the plan's tables. Before creating it we check each
 * table's replica identity: without a primary key (or REPLICA IDENTITY FULL / USING INDEX) PostgreSQL
 * would reject the old application's UPDATEs and DELETEs once the table is published, and the stream
 * could not say which row changed. Imago never changes the old database's tables on its own.
 */
import type pg from 'pg';
import { ImagoError } from '../errors.js';
import { missingTableHint } from '../catalog.js';
import { parseTableName, quoteIdent as quote, quoteQualified, tableKey, tableLabel } from '../sql.js';

export interface SourceTable {
  schema: string;
  name: string;
  /** Key columns the change stream carries for updates and deletes. */
  key: string[];
  columns: string[];
  /** SQL type of each column (format_type). */
  types: ReadonlyMap<string, string>;
}

/**
 * Describes the conversion's source tables, refusing one that does not exist or cannot be captured.
 * `consented`: tables the plan lets Imago switch to REPLICA IDENTITY FULL (capture.replicaIdentityFull),
 * described as they will be once it has (a check made before the switch, as the driver's preflight, must
 * not refuse them).
 */
export async function describeSourceTables(
  client: pg.Client,
  tables: string[],
  consented: readonly string[] = [],
): Promise<SourceTable[]> {
  const result: SourceTable[] = [];
  const full = new Set(consented.map((t) => tableKey(t, 'capture.replicaIdentityFull')));
  for (const spelling of tables) {
    const { schema, name } = parseTableName(spelling, "the conversion's tables");
    const table = tableLabel({ schema, name });
    const { rows } = await client.query<{ oid: number; relreplident: string }>(
      `SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [schema, name],
    );
    const rel = rows[0];
    if (!rel) {
      throw new ImagoError(
        `table ${table} does not exist in the old database`,
        table,
        await missingTableHint(client, { schema, name }, 'check the table list of the conversion'),
      );
    }
    const described = (
      await client.query<{ attname: string; type: string }>(
        `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
        [rel.oid],
      )
    ).rows;
    const columns = described.map((r) => r.attname);
    const types = new Map(described.map((r) => [r.attname, r.type]));
    const identityIndex = rel.relreplident === 'i' ? 'indisreplident' : 'indisprimary';
    const key = (
      await client.query<{ attname: string }>(
        `SELECT a.attname FROM pg_index i
           JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = $1 AND i.${identityIndex} ORDER BY k.ord`,
        [rel.oid],
      )
    ).rows.map((r) => r.attname);
    const replident = full.has(tableKey({ schema, name })) ? 'f' : rel.relreplident;
    if (replident === 'n' || (replident !== 'f' && key.length === 0)) {
      throw new ImagoError(
        `table ${table} has no primary key or replica identity, so its updates and deletes cannot be captured`,
        table,
        `add a primary key, or run: ALTER TABLE ${quoteQualified({ schema, name })} REPLICA IDENTITY FULL (or consent in the plan: capture.replicaIdentityFull)`,
      );
    }
    result.push({
      schema,
      name,
      key: replident === 'f' && key.length === 0 ? columns : key,
      columns,
      types,
    });
  }
  return result;
}

export async function createPublication(
  client: pg.Client,
  name: string,
  tables: SourceTable[],
): Promise<void> {
  const list = tables.map((t) => quoteQualified(t)).join(', ');
  // Changes to a partitioned table's partitions are published under the table's own name.
  await client.query(
    `CREATE PUBLICATION ${quote(name)} FOR TABLE ${list} WITH (publish_via_partition_root = true)`,
  );
}

export async function dropPublication(client: pg.Client, name: string): Promise<void> {
  await client.query(`DROP PUBLICATION IF EXISTS ${quote(name)}`);
}

/** Only with the plan's consent: makes updates and deletes carry the whole old row. */
export async function setReplicaIdentityFull(client: pg.Client, table: string): Promise<void> {
  await client.query(
    `ALTER TABLE ${quoteQualified(table, 'capture.replicaIdentityFull')} REPLICA IDENTITY FULL`,
  );
}
