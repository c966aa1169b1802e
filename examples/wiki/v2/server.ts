/**
 * Wiki v2 (MediaWiki 1.5 storage): `startWiki` for tests and Imago, or run directly as a process
 * (`DATABASE_URL=… PORT=… node --import tsx examples/wiki/v2/server.ts`).
 */
import { startWikiVersion, type RunningWiki, type WikiOptions } from '../app.js';
import { isMain, runStandalone } from '../standalone.js';
import { ensureSchemaV2 } from './schema.js';
import { storeV2 } from './store.js';

export function startWiki(options: WikiOptions): Promise<RunningWiki> {
  return startWikiVersion({ version: 2, ensureSchema: ensureSchemaV2, store: storeV2 }, options);
}

if (isMain(import.meta.url)) void runStandalone(2, startWiki);
