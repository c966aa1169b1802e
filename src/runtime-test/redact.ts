/**
 * Redaction for sample diffs, which carry real requests and answers into reports (and the report
 * file they are read from): what is kept for people is masked when a sample is made, so nothing
 * unredacted is stored; comparison always ran on the real values before. Masked by default:
 * credential headers (Authorization, Proxy-Authorization, Cookie, Set-Cookie), headers, query
 * parameters, form fields and JSON fields named like a secret (src/redact.ts: `token`, `password`,
 * `secret`, `apikey`, …), JWTs anywhere, and connection strings and bearer tokens in any text. The
 * plan's `runtimeTest.redact` adds names (fields, headers, query parameters) to the defaults.
 */
import {
  MASK,
  SECRET_HEADERS,
  SECRET_NAME_PARTS,
  isSecretName,
  maskStrings,
  normaliseNameParts,
  redactCredentials,
  redactHeaderLines,
  redactJsonFields,
  redactJwts,
  redactValue,
} from '../redact.js';
import type { RedactOptions, RuntimeTestConfig } from './config.js';
import type { AnswerSample, RuntimeTestReport, SampleDiff } from './report.js';

export { MASK };

export class Redactor {
  private readonly headers: Set<string>;
  private readonly query: Set<string>;
  private readonly fields: readonly string[];

  /** `extraHeaders`, `extraQuery`: the plan's older `redactHeaders` and `redactQuery`, added. */
  constructor(
    options: RedactOptions & { extraHeaders?: readonly string[]; extraQuery?: readonly string[] } = {},
  ) {
    this.headers = new Set(
      [...SECRET_HEADERS, ...(options.headers ?? []), ...(options.extraHeaders ?? [])].map((h) =>
        h.toLowerCase(),
      ),
    );
    this.query = new Set([...(options.query ?? []), ...(options.extraQuery ?? [])]);
    this.fields = [...SECRET_NAME_PARTS, ...normaliseNameParts(options.fields ?? [])];
  }

  /** Header record with secret values masked (names kept: that a cookie was sent matters). */
  headerRecord(headers: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers))
      out[name] = this.secretHeader(name) ? MASK : this.text(value);
    return out;
  }

  url(url: string): string {
    const q = url.indexOf('?');
    if (q === -1) return this.text(url);
    return this.text(`${url.slice(0, q)}?${this.pairs(url.slice(q + 1))}`);
  }

  /**
   * A body or any text: JSON and form fields named like a secret, JWTs and credential header lines
   * (the defaults), then Imago's own credentials (always).
   */
  text(text: string): string {
    let out = redactJsonFields(text, this.fields);
    if (out.includes('=')) out = this.formFields(out);
    return redactCredentials(redactHeaderLines(redactJwts(out)));
  }

  /**
   * A value from a difference at `path` (JSON keys, or `$headers.<name>` / `$body`): masked whole when
   * the path names a secret, else its strings and secret-named members masked, its structure kept.
   */
  value(path: readonly string[], value: unknown): unknown {
    if (path[0] === '$headers')
      return path[1] !== undefined && this.secretHeader(path[1]) ? MASK : this.deep(value);
    const named = path.some((segment) => isSecretName(segment, this.fields));
    return named ? maskStrings(value) : this.deep(value);
  }

  /** A stored sample redacted again (a report written before, or by an earlier version): idempotent. */
  sample(s: SampleDiff): SampleDiff {
    const answer = (a: AnswerSample): AnswerSample => ({
      ...a,
      headers: this.headerRecord(a.headers),
      body: this.text(a.body),
    });
    return {
      ...s,
      request: { ...s.request, url: this.url(s.request.url), headers: this.headerRecord(s.request.headers) },
      old: answer(s.old),
      new: 'error' in s.new ? { error: this.text(s.new.error) } : answer(s.new),
      ...(s.oldAgain ? { oldAgain: answer(s.oldAgain) } : {}),
      differences: s.differences.map((d) => {
        const path = d.path.split('.');
        return {
          ...d,
          ...(d.old === undefined ? {} : { old: this.value(path, d.old) }),
          ...(d.new === undefined ? {} : { new: this.value(path, d.new) }),
        };
      }),
    };
  }

  private secretHeader(name: string): boolean {
    return this.headers.has(name.toLowerCase()) || isSecretName(name, this.fields);
  }

  /** `a=1&token=…` (a query string or a form body): values of secret-named or listed fields masked. */
  private pairs(query: string): string {
    return query
      .split('&')
      .map((pair) => {
        const eq = pair.indexOf('=');
        if (eq === -1) return pair;
        const name = decodeURIComponentSafe(pair.slice(0, eq));
        const secret = this.query.has(name) || isSecretName(name, this.fields);
        return secret ? `${pair.slice(0, eq)}=${MASK}` : pair;
      })
      .join('&');
  }

  /** name=value pairs in a text body (a form, a query string inside HTML or a message). */
  private formFields(text: string): string {
    const secret = (name: string) => isSecretName(decodeURIComponentSafe(name), this.fields);
    // Quoted values first (`token="…"`), then bare ones, also inside quotes (`href="/r?token=…"`).
    return text
      .replace(/([\w.[\]-]+)=(["'])[^"']*\2/g, (pair, name: string, quote: string) =>
        secret(name) ? `${name}=${quote}${MASK}${quote}` : pair,
      )
      .replace(/([\w.[\]-]+)=([^&\s"'<>]+)/g, (pair, name: string) =>
        secret(name) ? `${name}=${MASK}` : pair,
      );
  }

  /** A JSON value with its secret-named members masked and its strings redacted as text. */
  private deep(value: unknown): unknown {
    return redactValue(value, { parts: this.fields, text: (t) => this.text(t) });
  }
}

/** The redactor a runtime test's configuration asks for (`redact`, and the older `redactHeaders`/`redactQuery`). */
export function redactorFor(config: RuntimeTestConfig): Redactor {
  return new Redactor({
    ...config.redact,
    extraHeaders: config.redactHeaders,
    extraQuery: config.redactQuery,
  });
}

/** Every sample of a stored report redacted again (it may come from a version that masked less). */
export function redactReport(report: RuntimeTestReport, redactor: Redactor): RuntimeTestReport {
  return {
    ...report,
    endpoints: report.endpoints.map((e) => ({ ...e, samples: e.samples.map((s) => redactor.sample(s)) })),
  };
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
