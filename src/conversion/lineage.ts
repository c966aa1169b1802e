/**
 * Lineage: which target rows each source row produced. An update of the source row replaces exactly
 * those rows (rows no longer produced are deleted), a delete removes them, and a truncate removes
 * everything the table produced.
 */
import type pg from 'pg';
import { connectClient } from '../database.js';

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

/**
 * The lineage an apply group reads and changes, read in one query up front and written in two at the
 * end, instead of a read and a write per source change.
 */
export class GroupLineage {
  private readonly entries = new Map<string, Targets>();
  private readonly changed = new Map<
    string,
    { sourceTable: string; sourceKey: string; targets: Targets | null }
  >();
  /** Source tables whose lineage is read from the target rows (keyed-lineage.ts): never written. */
  private readonly derived = new Set<string>();

  constructor(private readonly client: pg.Client) {}

  async prefetch(keys: { sourceTable: string; sourceKey: string }[]): Promise<void> {
    if (keys.length === 0) return;
    const { rows } = await this.client.query<{ source_table: string; source_key: string; targets: string }>(
      `SELECT l.source_table, l.source_key, l.targets FROM imago.lineage l
         JOIN unnest($1::text[], $2::text[]) AS k(t, k) ON l.source_table = k.t AND l.source_key = k.k`,
      [keys.map((k) => k.sourceTable), keys.map((k) => k.sourceKey)],
    );
    for (const row of rows)
      this.entries.set(id(row.source_table, row.source_key), JSON.parse(row.targets) as Targets);
  }

  /** A keyed table's lineage, read from its target rows: kept up to date here, never written. */
  derive(sourceTable: string, entries: Map<string, Targets>): void {
    this.derived.add(sourceTable);
    for (const [sourceKey, targets] of entries) this.entries.set(id(sourceTable, sourceKey), targets);
  }

  /** What the source row produced so far (prefetched or changed in this group). */
  get(sourceTable: string, sourceKey: string): Targets {
    return this.entries.get(id(sourceTable, sourceKey)) ?? [];
  }

  set(sourceTable: string, sourceKey: string, targets: Targets | null): void {
    const key = id(sourceTable, sourceKey);
    if (targets) this.entries.set(key, targets);
    else this.entries.delete(key);
    if (!this.derived.has(sourceTable)) this.changed.set(key, { sourceTable, sourceKey, targets });
  }

  /** Forgets a table's entries (after a truncate, which rewrote its lineage directly). */
  forgetTable(sourceTable: string): void {
    for (const [key, entry] of this.changed) if (entry.sourceTable === sourceTable) this.changed.delete(key);
    for (const key of this.entries.keys()) if (key.startsWith(`${sourceTable}\0`)) this.entries.delete(key);
  }

  async flush(): Promise<void> {
    const writes = [...this.changed.values()];
    this.changed.clear();
    await writeLineage(this.client, writes.filter((w) => w.targets !== null) as LineageEntry[]);
    const deletes = writes.filter((w) => w.targets === null);
    if (deletes.length === 0) return;
    await this.client.query(
      `DELETE FROM imago.lineage l USING unnest($1::text[], $2::text[]) AS k(t, k)
        WHERE l.source_table = k.t AND l.source_key = k.k`,
      [deletes.map((d) => d.sourceTable), deletes.map((d) => d.sourceKey)],
    );
  }
}

function id(sourceTable: string, sourceKey: string): string {
  return `${sourceTable}\0${sourceKey}`;
}

/**
 * The bulk copy writes the lineage without its key and builds it after, in one sort, instead of
 * inserting into the b-tree row by row. An interrupted copy starts over with the lineage emptied, so a
 * missing key is only ever seen by the copy that will build it.
 */
export async function dropLineageKey(client: pg.Client): Promise<void> {
  await client.query('ALTER TABLE imago.lineage DROP CONSTRAINT IF EXISTS lineage_pkey');
}

/**
 * Builds the lineage's key on a connection of its own (alongside the targets' deferred indexes). The
 * source key leads: its values differ, so the sort compares abbreviated keys (measured 2.5x faster
 * than behind the table name, the same for every row of a table).
 */
export async function addLineageKey(url: string): Promise<void> {
  const client = await connectClient(url, 'new');
  try {
    await client.query(
      'ALTER TABLE imago.lineage ADD CONSTRAINT lineage_pkey PRIMARY KEY (source_key, source_table)',
    );
  } finally {
    await client.end().catch(() => {});
  }
}
