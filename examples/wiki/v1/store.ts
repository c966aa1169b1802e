/**
 * v1 storage (MediaWiki 1.4 style): a page is its `cur` row; an edit first copies the current row
 * into `old`, then overwrites `cur`. History and recent changes are the union of both tables.
 */
import type pg from 'pg';
import { NAMESPACE, type ChangeView, type PageView, type RevisionView, type WikiStore } from '../api.js';
import { inTransaction, isoUtc } from '../sql.js';

// Ties on timestamp are broken the same way everywhere: by title, then the current row before
// older copies, then newer copies first, so repeated reads answer in the same order.
const HISTORY = `
WITH c AS (SELECT * FROM cur WHERE cur_namespace = $1 AND cur_title = $2)
SELECT ${isoUtc('ts')} AS timestamp, usr AS "user", cmt AS comment
FROM (
  SELECT cur_timestamp AS ts, 0 AS kind, cur_id AS id, cur_user AS usr, cur_comment AS cmt FROM c
  UNION ALL
  SELECT old_timestamp, 1, old_id, old_user, old_comment FROM old
  WHERE old_namespace = $1 AND old_title = $2 AND EXISTS (SELECT 1 FROM c)
) u
ORDER BY ts DESC, kind, id DESC
LIMIT $3`;

// Each side is cut to the limit first (with the same order) so the sort only sees 2 × limit rows.
const RECENT = `
SELECT title, ${isoUtc('ts')} AS timestamp, usr AS "user", cmt AS comment
FROM (
  (SELECT cur_title AS title, cur_timestamp AS ts, 0 AS kind, cur_id AS id, cur_user AS usr, cur_comment AS cmt
   FROM cur WHERE cur_namespace = $1 ORDER BY cur_timestamp DESC, cur_title LIMIT $2)
  UNION ALL
  (SELECT old_title, old_timestamp, 1, old_id, old_user, old_comment
   FROM old WHERE old_namespace = $1 ORDER BY old_timestamp DESC, old_title, old_id DESC LIMIT $2)
) u
ORDER BY ts DESC, title, kind, id DESC
LIMIT $2`;

export function storeV1(pool: pg.Pool): WikiStore {
  return {
    async page(title) {
      const { rows } = await pool.query<PageView>(
        `SELECT cur_title AS title, cur_text AS text, ${isoUtc('cur_timestamp')} AS timestamp,
                cur_user AS "user", cur_comment AS comment
         FROM cur WHERE cur_namespace = $1 AND cur_title = $2`,
        [NAMESPACE, title],
      );
      return rows[0];
    },

    async history(title, limit) {
      const { rows } = await pool.query<RevisionView>(HISTORY, [NAMESPACE, title, limit]);
      return rows.length > 0 ? rows : undefined;
    },

    async create(title, { text, user, comment }) {
      // ON CONFLICT: a concurrent create of the same title waits for the winner, then reports 409.
      const { rows } = await pool.query<{ timestamp: string }>(
        `INSERT INTO cur (cur_namespace, cur_title, cur_text, cur_comment, cur_user)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cur_namespace, cur_title) DO NOTHING
         RETURNING ${isoUtc('cur_timestamp')} AS timestamp`,
        [NAMESPACE, title, text, comment, user],
      );
      return rows[0]?.timestamp;
    },

    edit: (title, { text, user, comment }) =>
      inTransaction(pool, async (client) => {
        // The row lock serialises concurrent edits of a page, so each one archives the text it replaces.
        const locked = await client.query<{ cur_id: string }>(
          'SELECT cur_id FROM cur WHERE cur_namespace = $1 AND cur_title = $2 FOR UPDATE',
          [NAMESPACE, title],
        );
        const id = locked.rows[0]?.cur_id;
        if (id === undefined) return undefined;
        // Archive first, then overwrite: the statement order MediaWiki 1.4 used (and Imago's capture sees).
        await client.query(
          `INSERT INTO old (old_namespace, old_title, old_text, old_comment, old_user, old_timestamp)
           SELECT cur_namespace, cur_title, cur_text, cur_comment, cur_user, cur_timestamp FROM cur WHERE cur_id = $1`,
          [id],
        );
        const { rows } = await client.query<{ timestamp: string }>(
          `UPDATE cur SET cur_text = $2, cur_comment = $3, cur_user = $4,
                          cur_timestamp = clock_timestamp(), cur_is_new = false
           WHERE cur_id = $1
           RETURNING ${isoUtc('cur_timestamp')} AS timestamp`,
          [id, text, comment, user],
        );
        return rows[0]?.timestamp;
      }),

    async recent(limit) {
      const { rows } = await pool.query<ChangeView>(RECENT, [NAMESPACE, limit]);
      return rows;
    },
  };
}
