/**
 * Loads a user's conversion module (TypeScript or JavaScript, through tsx) and checks its shape, so a
 * wrong path or a module without a default `defineConversion(...)` export is named precisely.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { tableKeys } from './row-converter.js';
import { ImagoError, errorMessage, moduleLoadHint } from '../errors.js';
import { importUserModule } from '../user-module.js';
import type { Conversion } from './api.js';

export async function loadConversion(path: string): Promise<Conversion> {
  const file = resolve(path);
  if (!existsSync(file)) throw new ImagoError(`conversion module not found`, file, 'check the path');
  let mod: { default?: unknown };
  try {
    mod = await importUserModule(file);
  } catch (err) {
    throw new ImagoError(
      `the conversion module failed to load: ${errorMessage(err)}`,
      file,
      moduleLoadHint(err, 'fix the module'),
    );
  }
  const conversion = mod.default as Conversion | undefined;
  if (!conversion || typeof conversion !== 'object' || typeof conversion.tables !== 'object') {
    throw new ImagoError(
      'the conversion module has no default export made with defineConversion({ tables: … })',
      file,
      'export default defineConversion({ tables: { … } })',
    );
  }
  // Refused at load, so that `imago plan` says it before anything runs.
  tableKeys(conversion);
  return conversion;
}
