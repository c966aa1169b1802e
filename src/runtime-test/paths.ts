/**
 * Paths into an answer, shared by normalisers, expected differences and noise learning. A path is a
 * list of segments: `$status`, `$headers.<name>`, `$body` for a whole non-JSON body, otherwise the
 * JSON body's keys and indices (`revisions.0.user`). Patterns use `*` for one segment and `**` for
 * any number, so `revisions.*.timestamp` names one field in every element.
 */
export type Segment = string | number;

/** A whole body that is not a JSON object or array (text, HTML, a JSON scalar). */
export const WHOLE_BODY: readonly Segment[] = ['$body'];

export function formatPath(path: readonly Segment[]): string {
  return path.join('.');
}

/**
 * The endpoint-independent shape of a path: array indices become `*`, so that noise on
 * `changes.3.timestamp` and `changes.7.timestamp` is learned as one path.
 */
export function generalise(path: readonly Segment[]): string {
  return path.map((s) => (typeof s === 'number' ? '*' : s)).join('.');
}

export class PathPattern {
  private readonly segments: string[];
  constructor(readonly source: string) {
    this.segments = source.split('.');
  }

  matches(path: readonly Segment[]): boolean {
    return matchFrom(this.segments, 0, path, 0);
  }

  /** True when some path below `path` (or `path` itself) could match: walks can stop early otherwise. */
  mayMatchBelow(path: readonly Segment[]): boolean {
    for (let i = 0; i < path.length; i++) {
      const p = this.segments[i];
      if (p === undefined) return false;
      if (p === '**') return true;
      if (p !== '*' && p !== String(path[i])) return false;
    }
    return true;
  }
}

function matchFrom(pattern: string[], pi: number, path: readonly Segment[], si: number): boolean {
  if (pi === pattern.length) return si === path.length;
  const p = pattern[pi] as string;
  if (p === '**') {
    for (let k = si; k <= path.length; k++) if (matchFrom(pattern, pi + 1, path, k)) return true;
    return false;
  }
  if (si === path.length) return false;
  if (p !== '*' && p !== String(path[si])) return false;
  return matchFrom(pattern, pi + 1, path, si + 1);
}

/**
 * The array element a path lies in: the path cut after its last index (`changes.3.user` →
 * `changes.3`); a path through no array is its own. Noise is judged per element, because a list that
 * edits shift (recent changes) puts a different record at each index in each answer, and two of them
 * can agree on one field (the same user) by coincidence.
 */
export function enclosingElement(path: readonly Segment[]): readonly Segment[] {
  for (let i = path.length - 1; i >= 0; i--) if (typeof path[i] === 'number') return path.slice(0, i + 1);
  return path;
}

/** True when one path is a prefix of the other (a change to `a` and one to `a.b` touch each other). */
export function overlaps(a: readonly Segment[], b: readonly Segment[]): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (String(a[i]) !== String(b[i])) return false;
  return true;
}
