/**
 * Header rewriting at the proxy boundary: removes hop-by-hop headers in both directions (they describe
 * one connection, not the message) and adds X-Forwarded-For/-Proto/-Host so the app still sees the client.
 * Works on flat raw-header arrays ([name, value, name, value…]) because that is what node and llhttp
 * hand over without building objects, and the hot path is CPU-bound.
 */

/** RFC 9110 §7.6.1 connection-specific fields, plus `host` (the upstream client sets it from the backend origin). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  // The proxy answers `Expect: 100-continue` itself, when it decides to read the body.
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

/**
 * Names listed in a Connection header value are hop-by-hop too (RFC 9110 §7.6.1); `close` and
 * `keep-alive` (the common values) list nothing to remove.
 */
function addConnectionListed(value: string, listed: Set<string> | undefined): Set<string> | undefined {
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name && name !== 'close' && name !== 'keep-alive') (listed ??= new Set()).add(name);
  }
  return listed;
}

/** Drops the pairs whose lower-cased name is in `listed` (rare: only when Connection names a header). */
function withoutListed(pairs: string[], listed: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    if (listed.has((pairs[i] as string).toLowerCase())) continue;
    out.push(pairs[i] as string, pairs[i + 1] as string);
  }
  return out;
}

export interface ForwardedFor {
  clientIp: string;
  proto: string;
}

/**
 * Request headers for the upstream. Appends the client to X-Forwarded-For (keeping an existing chain,
 * since a load balancer may sit in front of us), and sets -Proto and -Host from what we received.
 * One pass over the raw pairs (a second one only when Connection lists extra names).
 */
export function upstreamRequestHeaders(raw: readonly string[], fwd: ForwardedFor): string[] {
  let listed: Set<string> | undefined;
  const out: string[] = [];
  let xff: string | undefined;
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
      else if (lower === 'host') host = value;
      else if (lower === 'connection') listed = addConnectionListed(value, listed);
      continue;
    }
    out.push(name, value);
  }
  const result = listed === undefined ? out : withoutListed(out, listed);
  result.push('x-forwarded-for', xff === undefined ? fwd.clientIp : `${xff}, ${fwd.clientIp}`);
  result.push('x-forwarded-proto', fwd.proto);
  if (host !== undefined) result.push('x-forwarded-host', host);
  return result;
}

const RESPONSE_HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

/**
 * Response headers for the client from the parser's flat [name, value, …] pairs; one pass (two when
 * Connection lists names). Returns the input array itself when nothing is removed.
 */
export function clientResponseHeaders(raw: string[]): string[] {
  let listed: Set<string> | undefined;
  let out: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (RESPONSE_HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') listed = addConnectionListed(raw[i + 1] as string, listed);
      // First removal: copy what came before.
      out ??= raw.slice(0, i);
      continue;
    }
    out?.push(name, raw[i + 1] as string);
  }
  const result = out ?? raw;
  return listed === undefined ? result : withoutListed(result, listed);
}
