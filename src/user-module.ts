/**
 * Loads a user's module (a plan, a conversion) as an ES module wherever it lives. Through the global
 * loader a `.ts` or `.js` file in a folder whose package.json lacks `"type": "module"` is taken for
 * CommonJS, and its `import` of Imago's ESM sources fails ("Cannot require() ES Module … in a
 * cycle", issue 21 item 12), although users write these files as ES modules. tsx's tsImport loads
 * the file and what it imports through a loader scope of its own (ESM and CommonJS hooks), which
 * does not have that limit.
 */
import { pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';

/**
 * One load per file and process, as `import()` gave: tsImport opens a loader scope per call, and a
 * conversion is loaded again where the driver needs it (its run, its abort), and tests load many.
 */
const loaded = new Map<string, Promise<{ default?: unknown }>>();

export function importUserModule(file: string): Promise<{ default?: unknown }> {
  let load = loaded.get(file);
  if (!load) {
    load = importOnce(file);
    loaded.set(file, load);
    // A module that failed to load is read again next time (the user may have fixed it).
    load.catch(() => loaded.delete(file));
  }
  return load;
}

async function importOnce(file: string): Promise<{ default?: unknown }> {
  const mod = (await tsImport(pathToFileURL(file).href, import.meta.url)) as { default?: unknown };
  // Loaded as CommonJS (the folder says so), an ES module's exports arrive as `module.exports`, the
  // namespace's default, marked by the transform's `__esModule`: its own default is the module's.
  const exported = mod.default as { __esModule?: unknown; default?: unknown } | undefined;
  return exported !== null && typeof exported === 'object' && exported.__esModule === true ? exported : mod;
}
