/**
 * The blog's database connection, configured the way ORM-built apps usually are: one variable per
 * setting (DB_HOST, DB_PORT, DB_USERNAME, DB_PASSWORD, DB_NAME) rather than a connection URL, and
 * its migration run on start.
 */
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { inTransaction } from '../wiki/sql.js';
import type { BlogSchema } from './schema.js';

export interface DatabaseSettings {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

const VARIABLES = {
  host: 'DB_HOST',
  port: 'DB_PORT',
  user: 'DB_USERNAME',
  password: 'DB_PASSWORD',
  database: 'DB_NAME',
} as const;

/** The settings from the environment; throws naming every variable that is missing. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): DatabaseSettings {
  const missing = Object.values(VARIABLES).filter((name) => !env[name]);
  if (missing.length > 0) throw new Error(`set ${missing.join(', ')}`);
  const port = Number(env[VARIABLES.port]);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`${VARIABLES.port} must be a port number, not ${JSON.stringify(env[VARIABLES.port])}`);
  return {
    host: String(env[VARIABLES.host]),
    port,
    user: String(env[VARIABLES.user]),
    password: String(env[VARIABLES.password]),
    database: String(env[VARIABLES.database]),
  };
}

/** The settings a PostgreSQL connection URL holds (5432 when it gives no port). */
export function settingsFromUrl(connectionString: string): DatabaseSettings {
  const url = new URL(connectionString);
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.slice(1)),
  };
}

/** The settings as the environment the app reads them from. */
export function settingsEnv(settings: DatabaseSettings): Record<string, string> {
  return {
    [VARIABLES.host]: settings.host,
    [VARIABLES.port]: String(settings.port),
    [VARIABLES.user]: settings.user,
    [VARIABLES.password]: settings.password,
    [VARIABLES.database]: settings.database,
  };
}

export function openPool(settings: DatabaseSettings, version: number): pg.Pool {
  // Timestamps without time zone hold UTC, as Prisma and Drizzle store them.
  const pool = new pg.Pool({ ...settings, max: 10, options: '-c TimeZone=UTC' });
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on('error', (err) =>
    console.error(`blog v${version}: idle database connection failed: ${err.message}`),
  );
  return pool;
}

/** Runs the version's migration unless its marker table exists; one starter at a time. */
export async function migrate(pool: pg.Pool, schema: BlogSchema): Promise<void> {
  const sql = await readFile(schema.migration, 'utf8');
  await inTransaction(pool, async (client) => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('blog-migration'))`);
    const { rows } = await client.query<{ found: string | null }>(
      `SELECT to_regclass(format('%I', $1::text)) AS found`,
      [schema.marker],
    );
    if (rows[0]?.found === null) await client.query(sql);
    return true;
  });
}
