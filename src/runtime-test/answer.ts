/**
 * An HTTP answer in the form the differ compares: status, headers by lower-case name, and the body
 * parsed by its content type (JSON structurally, text and HTML as strings, anything else by digest).
 */
import { createHash } from 'node:crypto';

export type Body =
  | { kind: 'json'; value: unknown }
  | { kind: 'text'; value: string }
  | { kind: 'binary'; sha256: string; bytes: number }
  | { kind: 'empty' };

export interface Answer {
  status: number;
  /** Lower-case names; repeated headers joined with ", " (set-cookie with "\n"). */
  headers: Record<string, string>;
  body: Body;
  /** The body was cut at the capture limit: it is not compared. */
  truncated: boolean;
  /** The bytes as received, for sample diffs. */
  raw: Buffer;
}

/** What the ingress mirror and the noise sampler hand over. */
export interface RawAnswer {
  status: number;
  /** Flat [name, value, …]. */
  headers: readonly string[];
  body: Buffer;
  truncated?: boolean;
}

export function headerRecord(flat: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    const value = flat[i + 1] as string;
    const prev = out[name];
    out[name] = prev === undefined ? value : `${prev}${name === 'set-cookie' ? '\n' : ', '}${value}`;
  }
  return out;
}

const TEXTUAL = /^(text\/|application\/(xml|xhtml\+xml|javascript|x-www-form-urlencoded))|\+xml/i;
const JSONISH = /^application\/(.+\+)?json/i;

export function parseAnswer(raw: RawAnswer): Answer {
  const headers = headerRecord(raw.headers);
  const type = (headers['content-type'] ?? '').trim();
  const truncated = raw.truncated ?? false;
  return {
    status: raw.status,
    headers,
    body: parseBody(raw.body, type, truncated),
    truncated,
    raw: raw.body,
  };
}

function parseBody(bytes: Buffer, type: string, truncated: boolean): Body {
  if (bytes.length === 0) return { kind: 'empty' };
  // A cut JSON document does not parse; its prefix is still worth showing as text in samples.
  if (JSONISH.test(type) && !truncated) {
    try {
      return { kind: 'json', value: JSON.parse(bytes.toString('utf8')) as unknown };
    } catch {
      // Declared JSON that does not parse is compared as text, so the difference stays visible.
    }
  }
  if (JSONISH.test(type) || TEXTUAL.test(type)) return { kind: 'text', value: bytes.toString('utf8') };
  return { kind: 'binary', sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
}
