/**
 * Normalisers from the plan, applied to both answers before they are compared: ignore paths, sort
 * arrays whose order carries no meaning, replace what a regular expression matches (ids, dates in
 * HTML), and numeric tolerance (applied by the differ, since it needs both values at once).
 */
import type { Body } from './answer.js';
import type { Normaliser } from './config.js';
import { PathPattern, type Segment } from './paths.js';

/** The part of an answer that is compared: status, the compared headers, the body. */
export interface View {
  status: number;
  headers: Record<string, string>;
  body: Body;
}

type Json = unknown;

export function normalise(view: View, normalisers: readonly Normaliser[]): View {
  if (normalisers.length === 0) return view;
  const out: View = {
    status: view.status,
    headers: { ...view.headers },
    body: view.body.kind === 'json' ? { kind: 'json', value: structuredClone(view.body.value) } : view.body,
  };
  for (const n of normalisers) {
    if (n.kind === 'ignore')
      ignore(
        out,
        n.paths.map((p) => new PathPattern(p)),
      );
    else if (n.kind === 'sort')
      sortArrays(
        out,
        n.paths.map((p) => new PathPattern(p)),
        n.by,
      );
    else if (n.kind === 'replace') replace(out, n);
  }
  return out;
}

function ignore(view: View, patterns: PathPattern[]): void {
  if (patterns.some((p) => p.matches(['$status']))) view.status = 0;
  for (const name of Object.keys(view.headers))
    if (patterns.some((p) => p.matches(['$headers', name]))) delete view.headers[name];
  if (patterns.some((p) => p.matches(['$body']))) view.body = { kind: 'empty' };
  else if (view.body.kind === 'json') view.body.value = without(view.body.value, [], patterns);
}

function without(value: Json, path: Segment[], patterns: PathPattern[]): Json {
  if (value === null || typeof value !== 'object') return value;
  const visit = (key: Segment, child: Json): { keep: boolean; value: Json } => {
    const childPath = [...path, key];
    if (patterns.some((p) => p.matches(childPath))) return { keep: false, value: child };
    if (!patterns.some((p) => p.mayMatchBelow(childPath))) return { keep: true, value: child };
    return { keep: true, value: without(child, childPath, patterns) };
  };
  if (Array.isArray(value)) {
    const kept: Json[] = [];
    value.forEach((child: Json, i) => {
      const r = visit(i, child);
      if (r.keep) kept.push(r.value);
    });
    return kept;
  }
  const obj = value as Record<string, Json>;
  for (const key of Object.keys(obj)) {
    const r = visit(key, obj[key]);
    if (r.keep) obj[key] = r.value;
    else delete obj[key];
  }
  return obj;
}

/** Calls `fn` on every value whose path matches, replacing it with the result. */
function mapAt(value: Json, path: Segment[], patterns: PathPattern[], fn: (v: Json) => Json): Json {
  let v = patterns.some((p) => p.matches(path)) ? fn(value) : value;
  if (v === null || typeof v !== 'object') return v;
  if (!patterns.some((p) => p.mayMatchBelow(path))) return v;
  if (Array.isArray(v)) v = v.map((child: Json, i) => mapAt(child, [...path, i], patterns, fn));
  else {
    const obj = v as Record<string, Json>;
    for (const key of Object.keys(obj)) obj[key] = mapAt(obj[key], [...path, key], patterns, fn);
  }
  return v;
}

function sortArrays(view: View, patterns: PathPattern[], by: string | undefined): void {
  if (view.body.kind !== 'json') return;
  const field = by === undefined ? undefined : by.split('.');
  const keyOf = (el: Json) => canonical(field ? pick(el, field) : el);
  view.body.value = mapAt(view.body.value, [], patterns, (v) =>
    Array.isArray(v)
      ? v
          .map((el: Json) => ({ el, k: keyOf(el) }))
          .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
          .map((x) => x.el)
      : v,
  );
}

function replace(view: View, n: Extract<Normaliser, { kind: 'replace' }>): void {
  const re = typeof n.pattern === 'string' ? new RegExp(n.pattern, 'g') : globalise(n.pattern);
  const sub = (s: string) => s.replace(re, n.with);
  const patterns = (n.paths ?? ['**']).map((p) => new PathPattern(p));
  for (const [name, value] of Object.entries(view.headers))
    if (patterns.some((p) => p.source.startsWith('$headers') && p.matches(['$headers', name])))
      view.headers[name] = sub(value);
  if (view.body.kind === 'text' && patterns.some((p) => p.matches(['$body']) || p.source === '**'))
    view.body = { kind: 'text', value: sub(view.body.value) };
  else if (view.body.kind === 'json')
    view.body.value = mapAt(view.body.value, [], patterns, (v) => (typeof v === 'string' ? sub(v) : v));
}

function globalise(re: RegExp): RegExp {
  return re.global ? new RegExp(re.source, re.flags) : new RegExp(re.source, `${re.flags}g`);
}

/** True when a tolerance normaliser makes these two numbers at `path` equal. */
export function tolerated(
  path: readonly Segment[],
  a: unknown,
  b: unknown,
  normalisers: readonly Normaliser[],
): boolean {
  if (typeof a !== 'number' || typeof b !== 'number') return false;
  const gap = Math.abs(a - b);
  return normalisers.some(
    (n) =>
      n.kind === 'tolerance' &&
      n.paths.some((p) => new PathPattern(p).matches(path)) &&
      ((n.absolute !== undefined && gap <= n.absolute) ||
        (n.relative !== undefined && gap <= n.relative * Math.max(Math.abs(a), Math.abs(b)))),
  );
}

function pick(value: Json, field: string[]): Json {
  let v = value;
  for (const f of field) v = v !== null && typeof v === 'object' ? (v as Record<string, Json>)[f] : undefined;
  return v;
}

/** JSON with sorted keys, so equal objects sort equally whatever their key order. */
export function canonical(value: Json): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'undefined';
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const obj = value as Record<string, Json>;
  return `{${Object.keys(obj)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`)
    .join(',')}}`;
}
