/**
 * v2 storage (MediaWiki 1.5 style): `page` points at its latest `revision`, whose body is a `text`
 * row. An edit appends text and revision, then moves the page's pointer; nothing is overwritten.
 */
import type pg from 'pg';
import {
  NAMESPACE,
  type ChangeView,
  type EditInput,
  type PageView,
  type RevisionView,
  type WikiStore,
} from '../api.js';
import { inTransaction, isoUtc } from '../sql.js';

/**
 * Appends a revision to a page the caller has locked (or just inserted) and points the page at it;
 * returns the revision's formatted timestamp.
 */
async function addRevision(
  client: pg.PoolClient,
  pageId: string,
  { text, user, comment }: EditInput,
  isNew: boolean,
): Promise<string | undefined> {
  const body = await client.query<{ old_id: string; len: number }>(
    'INSERT INTO text (old_text) VALUES ($1) RETURNING old_id, octet_length(old_text) AS len',
    [text],
  );
  const textRow = body.rows[0];
  if (!textRow) return undefined;
  const rev = await client.query<{ rev_id: string; timestamp: string }>(
    `INSERT INTO revision (rev_page, rev_text_id, rev_comment, rev_user, rev_timestamp)
     VALUES ($1, $2, $3, $4, clock_timestamp())
     RETURNING rev_id, ${isoUtc('rev_timestamp')} AS timestamp`,
    [pageId, textRow.old_id, comment, user],
  );
  const revRow = rev.rows[0];
  if (!revRow) return undefined;
  // page_touched is copied inside SQL: passing the timestamp through JavaScript would lose microseconds.
  await client.query(
    `UPDATE page SET page_latest = $2, page_len = $3, page_is_new = $4,
                     page_touched = (SELECT rev_timestamp FROM revision WHERE rev_id = $2)
     WHERE page_id = $1`,
    [pageId, revRow.rev_id, textRow.len, isNew],
  );
  return revRow.timestamp;
}

const HISTORY = `
SELECT ${isoUtc('r.rev_timestamp')} AS timestamp, r.rev_user AS "user", r.rev_comment AS comment
FROM page p
LEFT JOIN LATERAL (
  SELECT * FROM revision WHERE rev_page = p.page_id ORDER BY rev_timestamp DESC, rev_id DESC LIMIT $3
) r ON true
WHERE p.page_namespace = $1 AND p.page_title = $2
ORDER BY r.rev_timestamp DESC, r.rev_id DESC`;

// Same tie-breaking as v1: timestamp, then title, then the newest revision first.
const RECENT = `
SELECT p.page_title AS title, ${isoUtc('r.rev_timestamp')} AS timestamp, r.rev_user AS "user", r.rev_comment AS comment
FROM revision r JOIN page p ON p.page_id = r.rev_page
WHERE p.page_namespace = $1
ORDER BY r.rev_timestamp DESC, p.page_title, r.rev_id DESC
LIMIT $2`;

export function storeV2(pool: pg.Pool): WikiStore {
  return {
    async page(title) {
      const { rows } = await pool.query<PageView>(
        `SELECT p.page_title AS title, t.old_text AS text, ${isoUtc('r.rev_timestamp')} AS timestamp,
                r.rev_user AS "user", r.rev_comment AS comment, p.page_len AS length
         FROM page p
         JOIN revision r ON r.rev_id = p.page_latest
         JOIN text t ON t.old_id = r.rev_text_id
         WHERE p.page_namespace = $1 AND p.page_title = $2`,
        [NAMESPACE, title],
      );
      const page = rows[0];
      // `imago bench runtime-test` plants a regression the comparator is not told about: for titles
      // ending in 7, the comment of the latest revision is lost.
      if (page && process.env.WIKI_V2_PLANTED_REGRESSION === '1' && title.endsWith('7')) page.comment = '';
      return page;
    },

    async history(title, limit) {
      // The lateral join yields one all-NULL row for a page without revisions, and no row for no page.
      const { rows } = await pool.query<RevisionView | { timestamp: null }>(HISTORY, [
        NAMESPACE,
        title,
        limit,
      ]);
      if (rows.length === 0) return undefined;
      return rows.filter((r): r is RevisionView => r.timestamp !== null);
    },

    create: (title, edit) =>
      inTransaction(pool, async (client) => {
        // Insert the page first with a placeholder pointer (as MediaWiki 1.5 did); ON CONFLICT makes
        // a concurrent create of the same title wait for the winner and then report 409.
        const page = await client.query<{ page_id: string }>(
          `INSERT INTO page (page_namespace, page_title, page_latest, page_len, page_touched)
           VALUES ($1, $2, 0, 0, clock_timestamp())
           ON CONFLICT (page_namespace, page_title) DO NOTHING
           RETURNING page_id`,
          [NAMESPACE, title],
        );
        const pageId = page.rows[0]?.page_id;
        return pageId === undefined ? undefined : addRevision(client, pageId, edit, true);
      }),

    edit: (title, edit) =>
      inTransaction(pool, async (client) => {
        // The row lock serialises concurrent edits of a page, so page_latest always ends on the last one.
        const locked = await client.query<{ page_id: string }>(
          'SELECT page_id FROM page WHERE page_namespace = $1 AND page_title = $2 FOR UPDATE',
          [NAMESPACE, title],
        );
        const pageId = locked.rows[0]?.page_id;
        return pageId === undefined ? undefined : addRevision(client, pageId, edit, false);
      }),

    async recent(limit) {
      const { rows } = await pool.query<ChangeView>(RECENT, [NAMESPACE, limit]);
      return rows;
    },
  };
}
