/**
 * Starts one wiki version: a connection pool, the version's schema, then the shared API over the
 * version's store. Both versions' `startWiki` are this with their own schema and store.
 */
import pg from 'pg';
import { wikiRoutes, type WikiStore } from './api.js';
import { serve } from './http.js';

export interface WikiOptions {
  databaseUrl: string;
  port?: number;
  host?: string;
}

export interface RunningWiki {
  port: number;
  url: string;
  close(): Promise<void>;
}

export interface WikiVersion {
  version: number;
  ensureSchema(pool: pg.Pool): Promise<void>;
  store(pool: pg.Pool): WikiStore;
}

export async function startWikiVersion(
  { version, ensureSchema, store }: WikiVersion,
  { databaseUrl, port = 0, host = '127.0.0.1' }: WikiOptions,
): Promise<RunningWiki> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on('error', (err) =>
    console.error(`wiki v${version}: idle database connection failed: ${err.message}`),
  );
  try {
    await ensureSchema(pool);
    return await serve({
      routes: wikiRoutes(store(pool), version),
      port,
      host,
      headers: { 'X-Wiki-Version': String(version) },
      onClose: () => pool.end(),
    });
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
}
