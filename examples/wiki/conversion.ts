/**
 * The wiki's v1 → v2 conversion (MediaWiki 1.4 → 1.5 storage), written with Imago's conversion API.
 *
 * - a `cur` row (a page and its current text) becomes a `page`, its current `revision` and a `text`;
 * - an `old` row (a previous revision) becomes a `revision` and a `text`, and finds its page by title.
 *
 * Ids: `old` rows keep their id as revision and text id. The current revision of a page gets the id
 * CURRENT_REVISION_BASE + cur_id, a range of its own, so it is stable across edits: when v1 edits a
 * page it copies the current text into `old` (a new revision here) and overwrites `cur` (this
 * revision's content). Imago brings v2's sequences past these ids before the switch.
 */
import { defineConversion, type Row, type TargetRow } from 'imago/conversion';

export const CURRENT_REVISION_BASE = 1_000_000_000_000n;

function currentRevisionId(curId: string | null | undefined): string {
  return (CURRENT_REVISION_BASE + BigInt(required(curId, 'cur_id'))).toString();
}

function required(value: string | null | undefined, column: string): string {
  if (value === null || value === undefined) throw new Error(`${column} is null`);
  return value;
}

function text(row: Row, column: string): string {
  return required(row[column], column);
}

export default defineConversion({
  tables: {
    cur: {
      transform(cur): TargetRow[] {
        const revId = currentRevisionId(cur.cur_id);
        return [
          {
            table: 'page',
            row: {
              page_id: text(cur, 'cur_id'),
              page_namespace: text(cur, 'cur_namespace'),
              page_title: text(cur, 'cur_title'),
              page_latest: revId,
              page_len: Buffer.byteLength(text(cur, 'cur_text'), 'utf8'),
              page_is_new: text(cur, 'cur_is_new'),
              page_touched: text(cur, 'cur_timestamp'),
            },
          },
          {
            table: 'revision',
            row: {
              rev_id: revId,
              rev_page: text(cur, 'cur_id'),
              rev_text_id: revId,
              rev_comment: text(cur, 'cur_comment'),
              rev_user: text(cur, 'cur_user'),
              rev_timestamp: text(cur, 'cur_timestamp'),
            },
          },
          { table: 'text', row: { old_id: revId, old_text: text(cur, 'cur_text'), old_flags: '' } },
        ];
      },
    },
    old: {
      async transform(old, { lookup }): Promise<TargetRow[]> {
        const title = text(old, 'old_title');
        const page = await lookup('page', { page_namespace: text(old, 'old_namespace'), page_title: title });
        if (!page) throw new Error(`no page titled "${title}" for revision ${old.old_id}`);
        return [
          {
            table: 'revision',
            row: {
              rev_id: text(old, 'old_id'),
              rev_page: text(page, 'page_id'),
              rev_text_id: text(old, 'old_id'),
              rev_comment: text(old, 'old_comment'),
              rev_user: text(old, 'old_user'),
              rev_timestamp: text(old, 'old_timestamp'),
            },
          },
          {
            table: 'text',
            row: {
              old_id: text(old, 'old_id'),
              old_text: text(old, 'old_text'),
              old_flags: text(old, 'old_flags'),
            },
          },
        ];
      },
    },
  },
});
