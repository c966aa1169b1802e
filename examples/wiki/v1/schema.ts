/**
 * The v1 wiki schema, as MediaWiki 1.4 stored pages: `cur` holds each page's current text, `old`
 * holds copies of every earlier revision. Created on start; idempotent.
 */
import type pg from 'pg';
import { SCHEMA_LOCK } from '../sql.js';

// One simple-protocol query: PostgreSQL runs it as a single implicit transaction.
const DDL = `
${SCHEMA_LOCK};
CREATE TABLE IF NOT EXISTS cur (
  cur_id bigserial PRIMARY KEY,
  cur_namespace int NOT NULL DEFAULT 0,
  cur_title text NOT NULL,
  cur_text text NOT NULL,
  cur_comment text NOT NULL DEFAULT '',
  cur_user text NOT NULL DEFAULT '',
  cur_timestamp timestamptz NOT NULL DEFAULT clock_timestamp(),
  cur_is_new boolean NOT NULL DEFAULT true,
  UNIQUE (cur_namespace, cur_title)
);
CREATE TABLE IF NOT EXISTS old (
  old_id bigserial PRIMARY KEY,
  old_namespace int NOT NULL DEFAULT 0,
  old_title text NOT NULL,
  old_text text NOT NULL,
  old_comment text NOT NULL DEFAULT '',
  old_user text NOT NULL DEFAULT '',
  old_timestamp timestamptz NOT NULL,
  old_flags text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS old_name_title ON old (old_namespace, old_title);
`;

export async function ensureSchemaV1(client: pg.ClientBase | pg.Pool): Promise<void> {
  await client.query(DDL);
}
