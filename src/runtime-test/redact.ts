/**
 * Redaction for sample diffs, which carry real requests and answers into reports and files:
 * credentials in headers (Authorization, Cookie, Set-Cookie, Proxy-Authorization and what the plan
 * adds) and in query parameters the plan names are masked; connection strings and bearer tokens in
 * any text go through Imago's general redaction.
 */
import { redactText } from '../redact.js';

const ALWAYS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'];
export const MASK = '***';

export class Redactor {
  private readonly headers: Set<string>;
  private readonly query: Set<string>;

  constructor(options: { headers?: readonly string[]; query?: readonly string[] } = {}) {
    this.headers = new Set([...ALWAYS, ...(options.headers ?? [])].map((h) => h.toLowerCase()));
    this.query = new Set(options.query ?? []);
  }

  /** Header record with secret values masked (names kept: that a cookie was sent matters). */
  headerRecord(headers: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers))
      out[name] = this.headers.has(name.toLowerCase()) ? MASK : redactText(value);
    return out;
  }

  url(url: string): string {
    if (this.query.size === 0 || !url.includes('?')) return redactText(url);
    const q = url.indexOf('?');
    const params = url
      .slice(q + 1)
      .split('&')
      .map((pair) => {
        const eq = pair.indexOf('=');
        const name = decodeURIComponentSafe(eq === -1 ? pair : pair.slice(0, eq));
        return this.query.has(name) && eq !== -1 ? `${pair.slice(0, eq)}=${MASK}` : pair;
      });
    return redactText(`${url.slice(0, q)}?${params.join('&')}`);
  }

  text(text: string): string {
    return redactText(text);
  }
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
