/**
 * The v2 wiki schema, as MediaWiki 1.5 stored pages: `page` (one row per title, pointing at its
 * latest revision), `revision` (metadata of every edit) and `text` (the bodies). Deliberately no
 * foreign keys, like MediaWiki. Created on start; idempotent.
 */
import type pg from 'pg';
import { SCHEMA_LOCK } from '../sql.js';

// One simple-protocol query: PostgreSQL runs it as a single implicit transaction.
const DDL = `
${SCHEMA_LOCK};
CREATE TABLE IF NOT EXISTS page (
  page_id bigserial PRIMARY KEY,
  page_namespace int NOT NULL DEFAULT 0,
  page_title text NOT NULL,
  page_latest bigint NOT NULL,
  page_len int NOT NULL,
  page_is_new boolean NOT NULL DEFAULT true,
  page_touched timestamptz NOT NULL,
  UNIQUE (page_namespace, page_title)
);
CREATE TABLE IF NOT EXISTS revision (
  rev_id bigserial PRIMARY KEY,
  rev_page bigint NOT NULL,
  rev_text_id bigint NOT NULL,
  rev_comment text NOT NULL DEFAULT '',
  rev_user text NOT NULL DEFAULT '',
  rev_timestamp timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rev_page_timestamp ON revision (rev_page, rev_timestamp);
-- Recent changes read the newest revisions first (MediaWiki 1.5 has this index too).
CREATE INDEX IF NOT EXISTS rev_timestamp ON revision (rev_timestamp);
CREATE TABLE IF NOT EXISTS text (
  old_id bigserial PRIMARY KEY,
  old_text text NOT NULL,
  old_flags text NOT NULL DEFAULT ''
);
`;

export async function ensureSchemaV2(client: pg.ClientBase | pg.Pool): Promise<void> {
  await client.query(DDL);
}
