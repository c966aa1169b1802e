/**
 * Loads a plan file — TypeScript/JavaScript (default export of defineUpgrade) or YAML — validates it
 * and resolves its relative paths against the file's folder. Every problem is reported at once, one
 * line per field (`switchover.maxPauseMs: expected a positive number`), with the YAML line when known.
 */
import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { ImagoError, errorMessage, moduleLoadHint } from '../errors.js';
import { importUserModule } from '../user-module.js';
import { planSchema, type UpgradePlan } from './schema.js';

export async function loadPlan(file: string): Promise<UpgradePlan> {
  const path = resolve(file);
  const ext = extname(path).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return parseYamlPlan(await readText(path), path);
  if (['.ts', '.mts', '.js', '.mjs'].includes(ext)) {
    let mod: { default?: unknown };
    try {
      mod = await importUserModule(path);
    } catch (err) {
      throw new ImagoError(
        `cannot load the plan: ${errorMessage(err)}`,
        file,
        moduleLoadHint(err, 'check the file exists and compiles'),
      );
    }
    if (mod.default === undefined)
      throw new ImagoError(
        'the plan module has no default export',
        file,
        'export default defineUpgrade({ … })',
      );
    return validatePlan(mod.default, path);
  }
  throw new ImagoError(`unknown plan format "${ext}"`, file, 'use a .ts, .js or .yaml plan');
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ImagoError(`cannot read the plan: ${errorMessage(err)}`, path);
  }
}

/** Validates a plan object; `path` is the plan file (its folder resolves relative paths). */
export function validatePlan(
  value: unknown,
  path: string,
  where?: (p: PropertyKey[]) => string,
): UpgradePlan {
  const parsed = planSchema.safeParse(value);
  if (!parsed.success) throw planError(parsed.error, value, path, where);
  const baseDir = dirname(path);
  const plan = { ...parsed.data, baseDir };
  plan.conversion = resolveFrom(baseDir, plan.conversion);
  plan.stateDir = resolveFrom(baseDir, plan.stateDir);
  for (const u of [plan.old, plan.new]) {
    if ('command' in u.app) u.app.cwd = resolveFrom(baseDir, u.app.cwd ?? '.');
  }
  return plan;
}

export function parseYamlPlan(text: string, path: string): UpgradePlan {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0];
    throw new ImagoError(`the plan is not valid YAML: ${first?.message ?? ''}`.trim(), path);
  }
  const missing: string[] = [];
  const value = interpolate(doc.toJS(), [], missing);
  if (missing.length > 0) {
    throw new ImagoError(
      `the plan uses unset environment variables:\n${missing.map((m) => `  ${m}`).join('\n')}`,
      path,
      'export them before running imago, or write the values in the plan',
    );
  }
  return validatePlan(value, path, (p) => {
    // A missing field has no node: point at the nearest enclosing one that exists.
    for (let n = p.length; n >= 0; n--) {
      const node = doc.getIn(p.slice(0, n) as unknown[], true);
      const offset = isNode(node) ? node.range?.[0] : undefined;
      if (offset !== undefined) return ` (line ${lines.linePos(offset).line})`;
    }
    return '';
  });
}

/** `${VAR}` in YAML strings reads the environment, so that secrets stay out of the file. */
function interpolate(value: unknown, path: string[], missing: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const v = process.env[name];
      if (v === undefined) missing.push(`${path.join('.')}: \${${name}}`);
      return v ?? '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, String(i)], missing));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, [...path, k], missing)]),
    );
  }
  return value;
}

function planError(
  error: z.ZodError,
  value: unknown,
  path: string,
  where?: (p: PropertyKey[]) => string,
): ImagoError {
  const lines = error.issues.map((issue) => {
    const field = issue.path.map(String).join('.') || '(plan)';
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
        : issue.code === 'invalid_type' && valueAt(value, issue.path) === undefined
          ? `required: ${issue.message}`
          : issue.message;
    return `${field}: ${message}${where?.(issue.path) ?? ''}`;
  });
  return new ImagoError(
    `the plan is invalid:\n${lines.map((l) => `  ${l}`).join('\n')}`,
    path,
    'fix the fields above (docs/driver.md describes every field)',
  );
}

function valueAt(value: unknown, path: PropertyKey[]): unknown {
  let v = value;
  for (const key of path)
    v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[key] : undefined;
  return v;
}

function resolveFrom(base: string, p: string): string {
  return isAbsolute(p) ? p : resolve(base, p);
}
