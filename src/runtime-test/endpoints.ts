/**
 * Endpoint grouping: requests are counted per route template (`GET /wiki/:title`), declared in the
 * plan or learned from traffic. Learning keeps a tree of path segments per method; a position whose
 * distinct values pass a threshold (or that looks like an id: a number, a UUID, long hex) becomes a
 * parameter, so 2,000 page titles make one endpoint, not 2,000.
 */
interface Template {
  method: string | undefined;
  segments: string[];
  source: string;
}

interface Node {
  children: Map<string, Node>;
  param: Node | undefined;
}

const ID = /^(\d+|[0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

export function pathOf(url: string): string {
  const q = url.search(/[?#]/);
  return q === -1 ? url : url.slice(0, q);
}

function parseTemplate(source: string): Template {
  const space = source.indexOf(' ');
  const method = space === -1 ? undefined : source.slice(0, space).toUpperCase();
  const path = space === -1 ? source : source.slice(space + 1).trim();
  return { method: method === '*' ? undefined : method, segments: path.split('/'), source: path };
}

function matchTemplate(t: Template, method: string, path: string): boolean {
  if (t.method !== undefined && t.method !== method.toUpperCase()) return false;
  const segs = path.split('/');
  const last = t.segments.length - 1;
  if (t.segments[last] === '*') {
    if (segs.length < last) return false;
  } else if (segs.length !== t.segments.length) return false;
  for (let i = 0; i < t.segments.length; i++) {
    const p = t.segments[i] as string;
    if (p === '*' && i === last) return true;
    if (!p.startsWith(':') && p !== segs[i]) return false;
  }
  return true;
}

/** Whether a plan's endpoint scope ('GET /wiki/:title', '/recent', absent = all) covers a request. */
export function scopeMatches(scope: string | undefined, method: string, url: string): boolean {
  return compileScope(scope)(method, url);
}

/** The same, parsed once (the comparator checks every scope on every read). */
export function compileScope(scope: string | undefined): (method: string, url: string) => boolean {
  if (scope === undefined) return () => true;
  const t = parseTemplate(scope);
  return (method, url) => matchTemplate(t, method, pathOf(url));
}

const newNode = (): Node => ({ children: new Map(), param: undefined });

function mergeInto(into: Node, from: Node): void {
  if (from.param) mergeInto((into.param ??= newNode()), from.param);
  for (const [seg, child] of from.children) {
    const existing = into.children.get(seg);
    if (existing) mergeInto(existing, child);
    else into.children.set(seg, child);
  }
}

export class Endpoints {
  private readonly declared: Template[];
  private readonly learned = new Map<string, Node>();

  constructor(
    declared: readonly string[] = [],
    private readonly learnAfter = 20,
  ) {
    this.declared = declared.map(parseTemplate);
  }

  /**
   * The endpoint key of a request ('GET /wiki/:title'); `learned` is true when this request made a
   * position a parameter, i.e. keys handed out before may now group differently (see rekey).
   */
  key(method: string, url: string): { key: string; learned: boolean } {
    const m = method.toUpperCase();
    const path = pathOf(url);
    const declared = this.declared.find((t) => matchTemplate(t, m, path));
    if (declared) return { key: `${m} ${declared.source}`, learned: false };
    let root = this.learned.get(m);
    if (!root) this.learned.set(m, (root = newNode()));
    let learned = false;
    let node = root;
    const out: string[] = [];
    for (const seg of path.split('/')) {
      if (
        !node.param &&
        (ID.test(seg) || (!node.children.has(seg) && node.children.size >= this.learnAfter))
      ) {
        // Collapse every literal seen at this position into one parameter.
        // Keys handed out for those literals change: the caller must rekey.
        learned ||= node.children.size > 0;
        const param = newNode();
        for (const child of node.children.values()) mergeInto(param, child);
        node.children.clear();
        node.param = param;
      }
      if (node.param) {
        out.push(':param');
        node = node.param;
      } else {
        out.push(seg);
        let child = node.children.get(seg);
        if (!child) node.children.set(seg, (child = newNode()));
        node = child;
      }
    }
    return { key: `${m} ${out.join('/')}`, learned };
  }

  /** The key an existing key maps to now (after learning), without learning anything. */
  rekey(key: string): string {
    const space = key.indexOf(' ');
    const m = key.slice(0, space);
    const path = key.slice(space + 1);
    if (this.declared.some((t) => t.source === path)) return key;
    let node = this.learned.get(m);
    const out: string[] = [];
    for (const seg of path.split('/')) {
      if (node?.param) {
        out.push(':param');
        node = node.param;
      } else {
        out.push(seg);
        node = node?.children.get(seg);
      }
    }
    return `${m} ${out.join('/')}`;
  }
}
