/**
 * A module `load` hook for Imago's own TypeScript: esbuild without `keepNames`.
 *
 * tsx transforms with esbuild's `keepNames`, which wraps every named function expression, arrow
 * function and class in `__name(fn, "name")`: an `Object.defineProperty(fn, 'name', …)` each time
 * the closure is *created*. In per-request code (a handler object with arrow-function fields, a
 * `retry: () => …` callback) that is a slow-path property definition per request: about 0.5 µs
 * each, and functions whose maps changed after creation (measured on the ingress: see
 * docs/ingress.md). A type-stripping transform renames nothing, so the names `keepNames` restores
 * are the ones JavaScript infers anyway (`abort = () => …` is named `abort`).
 *
 * Only Imago's own files, whose tsconfig is known, take this path; everything else (users' plans
 * and conversions, `.cts`, packages) is loaded by tsx as before, and resolution stays tsx's.
 */
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const root = new URL('../../', import.meta.url).href;
const OWN = ['src/', 'examples/', 'test/', 'scripts/', 'bin/'].map((dir) => root + dir);
const { compilerOptions } = JSON.parse(readFileSync(new URL('tsconfig.json', root), 'utf8'));
const options = {
  loader: 'ts',
  format: 'esm',
  target: `node${process.versions.node}`,
  sourcemap: 'inline',
  tsconfigRaw: { compilerOptions },
};

export async function load(url, context, nextLoad) {
  const path = url.split('?')[0];
  if (!path.endsWith('.ts') || !OWN.some((dir) => path.startsWith(dir))) return nextLoad(url, context);
  const file = fileURLToPath(path);
  const { code } = await transform(await readFile(file, 'utf8'), { ...options, sourcefile: file });
  return { format: 'module', source: code, shortCircuit: true };
}
