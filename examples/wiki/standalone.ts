/**
 * Running a wiki version as its own process (how Imago starts a universe's app): configuration from
 * the environment, one "listening" line on stdout for the supervisor, clean exit on SIGTERM/SIGINT.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { RunningWiki, WikiOptions } from './app.js';

/** True when the module at `moduleUrl` is the script node was asked to run. */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(script)).href;
  } catch {
    return moduleUrl === pathToFileURL(script).href;
  }
}

export async function runStandalone(
  version: number,
  start: (options: WikiOptions) => Promise<RunningWiki>,
): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    console.error(`wiki v${version}: set DATABASE_URL to the PostgreSQL connection string`);
    process.exit(2);
  }
  let wiki: RunningWiki;
  try {
    wiki = await start({
      databaseUrl,
      port: Number(process.env.PORT ?? 0),
      host: process.env.HOST ?? '127.0.0.1',
    });
  } catch (err) {
    console.error(`wiki v${version}: cannot start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  console.log(`wiki v${version} listening on ${wiki.url}`);
  const stop = () => {
    wiki.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`wiki v${version}: close failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
