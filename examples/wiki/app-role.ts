/**
 * The wiki v1 running as its own, non-superuser database role (owning its tables), as a real
 * deployment would: what revoke fencing needs, since a superuser's writes cannot be revoked.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const WIKI_APP_ROLE = 'wiki_app';

/** Creates the role, hands it the v1 tables, and returns the connection string the app should use. */
export async function createWikiAppRole(oldDbUrl: string): Promise<string> {
  const password = randomBytes(8).toString('hex');
  const client = new pg.Client({ connectionString: oldDbUrl });
  await client.connect();
  try {
    for (const statement of [
      `CREATE ROLE ${WIKI_APP_ROLE} LOGIN PASSWORD '${password}'`,
      `GRANT CREATE, USAGE ON SCHEMA public TO ${WIKI_APP_ROLE}`,
      `ALTER TABLE cur OWNER TO ${WIKI_APP_ROLE}`,
      `ALTER TABLE old OWNER TO ${WIKI_APP_ROLE}`,
    ]) {
      await client.query(statement);
    }
  } finally {
    await client.end();
  }
  const url = new URL(oldDbUrl);
  url.username = WIKI_APP_ROLE;
  url.password = password;
  return url.toString();
}
