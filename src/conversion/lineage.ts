/**
 * Lineage: which target rows each source row produced. An update of the source row replaces exactly
 * those rows (rows no longer produced are deleted), a delete removes them, and a truncate removes
 * everything the table produced.
 */
import type pg from 'pg';

/** Target rows as [table, primary key values]. */
export type Targets = [string, string[]][];

export interface LineageEntry {
  sourceTable: string;
  sourceKey: string;
  targets: Targets;
}

export async function readLineage(
  client: pg.Client,
  sourceTable: string,
  sourceKey: string,
): Promise<Targets> {
  const { rows } = await client.query<{ targets: string }>(
    'SELECT targets FROM imago.lineage WHERE source_table = $1 AND source_key = $2',
    [sourceTable, sourceKey],
  );
  return rows[0] ? (JSON.parse(rows[0].targets) as Targets) : [];
}

export async function writeLineage(client: pg.Client, entries: LineageEntry[]): Promise<void> {
  if (entries.length === 0) return;
  // Later entries for the same source row win (ON CONFLICT cannot touch one row twice).
  const unique = new Map(entries.map((e) => [`${e.sourceTable}\0${e.sourceKey}`, e]));
  const list = [...unique.values()];
  await client.query(
    `INSERT INTO imago.lineage (source_table, source_key, targets)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
     ON CONFLICT (source_table, source_key) DO UPDATE SET targets = EXCLUDED.targets`,
    [
      list.map((e) => e.sourceTable),
      list.map((e) => e.sourceKey),
      list.map((e) => JSON.stringify(e.targets)),
    ],
  );
}

export async function deleteLineage(
  client: pg.Client,
  sourceTable: string,
  sourceKey: string,
): Promise<void> {
  await client.query('DELETE FROM imago.lineage WHERE source_table = $1 AND source_key = $2', [
    sourceTable,
    sourceKey,
  ]);
}

/** Removes and returns the lineage of a whole source table (TRUNCATE). */
export async function takeTableLineage(client: pg.Client, sourceTable: string): Promise<Targets> {
  const { rows } = await client.query<{ targets: string }>(
    'DELETE FROM imago.lineage WHERE source_table = $1 RETURNING targets',
    [sourceTable],
  );
  return rows.flatMap((r) => JSON.parse(r.targets) as Targets);
}
