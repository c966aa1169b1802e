/**
 * Wiki v1 (MediaWiki 1.4 storage): `startWiki` for tests and Imago, or run directly as a process
 * (`DATABASE_URL=… PORT=… node --import tsx examples/wiki/v1/server.ts`).
 */
import { startWikiVersion, type RunningWiki, type WikiOptions } from '../app.js';
import { isMain, runStandalone } from '../standalone.js';
import { ensureSchemaV1 } from './schema.js';
import { storeV1 } from './store.js';

export function startWiki(options: WikiOptions): Promise<RunningWiki> {
  return startWikiVersion({ version: 1, ensureSchema: ensureSchemaV1, store: storeV1 }, options);
}

if (isMain(import.meta.url)) void runStandalone(1, startWiki);
