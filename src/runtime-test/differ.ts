/**
 * The differ: compares two views of answers (status, compared headers, body) and lists the
 * differences by path. JSON is compared structurally (microdiff), so key order and whitespace never
 * count; text and HTML are compared whole after normalisation, binary bodies by digest.
 */
import microdiff from 'microdiff';
import type { Normaliser } from './config.js';
import { tolerated, type View } from './normalise.js';
import { generalise, WHOLE_BODY, type Segment } from './paths.js';

export interface Difference {
  path: Segment[];
  /** The path with array indices as `*`: what noise is learned on. */
  key: string;
  kind: 'added' | 'removed' | 'changed';
  old?: unknown;
  new?: unknown;
}

const difference = (path: Segment[], kind: Difference['kind'], o?: unknown, n?: unknown): Difference => ({
  path,
  key: generalise(path),
  kind,
  ...(o === undefined ? {} : { old: o }),
  ...(n === undefined ? {} : { new: n }),
});

/** Differences from `a` to `b`; numbers within a tolerance normaliser are equal. */
export function diffViews(a: View, b: View, normalisers: readonly Normaliser[] = []): Difference[] {
  const out: Difference[] = [];
  if (a.status !== b.status) out.push(difference(['$status'], 'changed', a.status, b.status));
  for (const name of new Set([...Object.keys(a.headers), ...Object.keys(b.headers)])) {
    const x = a.headers[name];
    const y = b.headers[name];
    if (x === y) continue;
    out.push(
      difference(
        ['$headers', name],
        x === undefined ? 'added' : y === undefined ? 'removed' : 'changed',
        x,
        y,
      ),
    );
  }
  const ab = a.body;
  const bb = b.body;
  if (ab.kind === 'json' && bb.kind === 'json' && isContainer(ab.value) && isContainer(bb.value)) {
    if (Array.isArray(ab.value) !== Array.isArray(bb.value)) {
      out.push(difference([...WHOLE_BODY], 'changed', ab.value, bb.value));
    } else {
      for (const d of microdiff(ab.value, bb.value)) {
        if (d.type === 'CREATE') out.push(difference(d.path, 'added', undefined, d.value));
        else if (d.type === 'REMOVE') out.push(difference(d.path, 'removed', d.oldValue, undefined));
        else if (!tolerated(d.path, d.oldValue, d.value, normalisers))
          out.push(difference(d.path, 'changed', d.oldValue, d.value));
      }
    }
  } else if (!sameBody(ab, bb, normalisers)) {
    out.push(difference([...WHOLE_BODY], 'changed', bodyValue(ab), bodyValue(bb)));
  }
  return out;
}

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return v !== null && typeof v === 'object';
}

function sameBody(a: View['body'], b: View['body'], normalisers: readonly Normaliser[]): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'json' && b.kind === 'json')
    return a.value === b.value || tolerated(WHOLE_BODY, a.value, b.value, normalisers);
  if (a.kind === 'text' && b.kind === 'text') return a.value === b.value;
  if (a.kind === 'binary' && b.kind === 'binary') return a.sha256 === b.sha256;
  return true;
}

function bodyValue(b: View['body']): unknown {
  switch (b.kind) {
    case 'json':
    case 'text':
      return b.value;
    case 'binary':
      return `<${b.bytes} bytes, sha256 ${b.sha256.slice(0, 12)}…>`;
    case 'empty':
      return '';
  }
}
