/**
 * The wiki v1 running as its own, non-superuser database role (owning its tables), as a real
 * deployment would: what revoke fencing needs, since a superuser's writes cannot be revoked.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { quoteIdent, quoteLiteral, quoteQualified } from '../../src/sql.js';

export const WIKI_APP_ROLE = 'wiki_app';

/**
 * Creates a login role with a random password, hands it `tables` (spelled as Imago's plans spell
 * them: `User` or `"User"`, schema public unless given) and returns the connection string of
 * `adminUrl`'s database as that role.
 */
export async function createAppRole(adminUrl: string, role: string, tables: string[]): Promise<string> {
  const password = randomBytes(8).toString('hex');
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    for (const statement of [
      `CREATE ROLE ${quoteIdent(role)} LOGIN PASSWORD ${quoteLiteral(password)}`,
      `GRANT CREATE, USAGE ON SCHEMA public TO ${quoteIdent(role)}`,
      ...tables.map((table) => `ALTER TABLE ${quoteQualified(table)} OWNER TO ${quoteIdent(role)}`),
    ]) {
      await client.query(statement);
    }
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.username = role;
  url.password = password;
  return url.toString();
}

/** The wiki's role, owning v1's tables; returns the connection string the app should use. */
export function createWikiAppRole(oldDbUrl: string): Promise<string> {
  return createAppRole(oldDbUrl, WIKI_APP_ROLE, ['cur', 'old']);
}
