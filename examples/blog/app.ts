/**
 * Starts one blog version: a pool on the database the environment names, the version's migration,
 * then the API over the version's names. Run as a process (`node --import tsx v1/server.ts`) it reads
 * DB_HOST, DB_PORT, DB_USERNAME, DB_PASSWORD, DB_NAME and PORT, HOST, prints one "listening" line and
 * exits 0 on SIGTERM.
 */
import { blogRoutes } from './api.js';
import { migrate, openPool, settingsFromEnv, type DatabaseSettings } from './db.js';
import type { BlogSchema } from './schema.js';
import { blogStore } from './store.js';
import { serve, type Served } from '../wiki/http.js';

export const VERSION_HEADER = 'x-blog-version';

export async function startBlog(
  schema: BlogSchema,
  { database, port = 0, host = '127.0.0.1' }: { database: DatabaseSettings; port?: number; host?: string },
): Promise<Served> {
  const pool = openPool(database, schema.version);
  try {
    await migrate(pool, schema);
    return await serve({
      routes: blogRoutes(blogStore(pool, schema)),
      port,
      host,
      headers: { [VERSION_HEADER]: String(schema.version) },
      name: `blog v${schema.version}`,
      onClose: () => pool.end(),
    });
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
}

export async function runBlog(schema: BlogSchema): Promise<void> {
  const name = `blog v${schema.version}`;
  let blog: Served;
  try {
    blog = await startBlog(schema, {
      database: settingsFromEnv(),
      port: Number(process.env.PORT ?? 3000),
      host: process.env.HOST ?? '127.0.0.1',
    });
  } catch (err) {
    console.error(`${name}: cannot start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  console.log(`${name} listening on ${blog.url}`);
  const stop = () => {
    blog.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`${name}: close failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
