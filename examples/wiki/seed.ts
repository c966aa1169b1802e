/**
 * Fills an empty v1 wiki with generated pages for demos and benchmarks, set-based (generate_series)
 * so that tens of thousands of revisions take well under a second of SQL.
 */
import pg from 'pg';
import { ensureSchemaV1 } from './v1/schema.js';

export interface SeedOptions {
  pages: number;
  /** Revisions per page, counting the current one: each page gets revisionsPerPage - 1 `old` rows. */
  revisionsPerPage: number;
}

export interface SeedCounts {
  /** Rows inserted into `cur` (one per page). */
  cur: number;
  /** Rows inserted into `old` (earlier revisions). */
  old: number;
}

// Revision r of page p is stamped base + ((r - 1) * pages + p) seconds: increasing per page, distinct
// across the wiki, and interleaved so recent changes span many pages. The microseconds are there so
// that formatting them is exercised. Every tenth page carries non-ASCII text.
const REVISIONS = `
SELECT p, r,
       'Page_' || p AS title,
       CASE WHEN p % 10 = 0 THEN 'Grüße – 東京. ' ELSE '' END
         || 'Revision ' || r || ' of Page_' || p || '. ' || repeat('Lorem ipsum dolor sit amet. ', 4) AS body,
       'revision ' || r AS comment,
       'User_' || ((p + r) % 7) AS usr,
       timestamptz '2024-01-01 00:00:00+00'
         + ((r - 1) * $1::bigint + p) * interval '1 second' + (p % 1000) * interval '1 microsecond' AS ts
FROM generate_series(1, $1::int) AS p, generate_series(1, $2::int) AS r`;

/** Seeds Page_1..Page_N into an empty v1 wiki (the schema is created if missing); one transaction. */
export async function seedWiki(
  databaseUrl: string,
  { pages, revisionsPerPage }: SeedOptions,
): Promise<SeedCounts> {
  if (!Number.isInteger(pages) || pages < 0)
    throw new RangeError(`pages must be an integer ≥ 0, got ${pages}`);
  if (!Number.isInteger(revisionsPerPage) || revisionsPerPage < 1) {
    throw new RangeError(`revisionsPerPage must be an integer ≥ 1, got ${revisionsPerPage}`);
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await ensureSchemaV1(client);
    await client.query('BEGIN');
    // Inserted in time order so that old_id grows with old_timestamp, as real editing would produce.
    const old = await client.query(
      `INSERT INTO old (old_namespace, old_title, old_text, old_comment, old_user, old_timestamp)
       SELECT 0, title, body, comment, usr, ts FROM (${REVISIONS}) s WHERE r < $2::int ORDER BY r, p`,
      [pages, revisionsPerPage],
    );
    const cur = await client.query(
      `INSERT INTO cur (cur_namespace, cur_title, cur_text, cur_comment, cur_user, cur_timestamp, cur_is_new)
       SELECT 0, title, body, comment, usr, ts, r = 1 FROM (${REVISIONS}) s WHERE r = $2::int ORDER BY p`,
      [pages, revisionsPerPage],
    );
    await client.query('COMMIT');
    // Fresh statistics, so the first requests after seeding get sensible plans.
    await client.query('ANALYZE cur, old');
    return { cur: cur.rowCount ?? 0, old: old.rowCount ?? 0 };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}
