/**
 * Request classification into reads and writes. Only reads are mirrored (a mirrored write would be
 * applied twice: the new database is fed by conversion), so a mistake here is a correctness problem.
 * The default is by method (safe methods are reads); the plan overrides it with method + path rules
 * for apps that, say, write on GET /logout or read on POST /search. First matching rule wins.
 */
export type RequestClass = 'read' | 'write';

export interface ClassRule {
  /** HTTP method, case-insensitive; '*' or absent matches any. */
  method?: string;
  /**
   * Path (without query) to match: exact ('/search'), prefix ('/api/*'), '*' inside a segment
   * ('/pages/ * /history' without spaces), or a RegExp tested against the path.
   */
  path: string | RegExp;
  class: RequestClass;
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  // A trailing '/*' matches the prefix itself and everything below it.
  const body = escaped.endsWith('/*')
    ? `${escaped.slice(0, -2).replace(/\*/g, '[^/]*')}(?:/.*)?`
    : escaped.replace(/\*/g, '[^/]*');
  return new RegExp(`^${body}$`);
}

export class Classifier {
  private readonly rules: { method?: string; path: RegExp; class: RequestClass }[];

  constructor(rules: readonly ClassRule[] = []) {
    this.rules = rules.map((r) => ({
      method: r.method === undefined || r.method === '*' ? undefined : r.method.toUpperCase(),
      path: typeof r.path === 'string' ? globToRegExp(r.path) : r.path,
      class: r.class,
    }));
  }

  classify(method: string, url: string): RequestClass {
    if (this.rules.length > 0) {
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      for (const rule of this.rules) {
        if (rule.method !== undefined && rule.method !== method) continue;
        if (rule.path.test(path)) return rule.class;
      }
    }
    return READ_METHODS.has(method) ? 'read' : 'write';
  }
}
