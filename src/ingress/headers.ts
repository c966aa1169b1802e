/**
 * Header rewriting at the proxy boundary: removes hop-by-hop headers in both directions (they describe
 * one connection, not the message) and adds X-Forwarded-For/-Proto/-Host so the app still sees the client.
 * Works on flat raw-header arrays ([name, value, name, value…]) because that is what node and undici
 * hand over without building objects, and the hot path is CPU-bound.
 */

/** RFC 9110 §7.6.1 connection-specific fields, plus `host` (undici sets it from the upstream origin). */
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

/** Names listed in a Connection header are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(raw: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'connection') continue;
    for (const token of (raw[i + 1] as string).split(',')) {
      const name = token.trim().toLowerCase();
      if (name && name !== 'close' && name !== 'keep-alive') (listed ??= new Set()).add(name);
    }
  }
  return listed;
}

export interface ForwardedFor {
  clientIp: string;
  proto: string;
}

/**
 * Request headers for the upstream. Appends the client to X-Forwarded-For (keeping an existing chain,
 * since a load balancer may sit in front of us), and sets -Proto and -Host from what we received.
 */
export function upstreamRequestHeaders(raw: readonly string[], fwd: ForwardedFor): string[] {
  const listed = connectionListed(raw);
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
      continue;
    }
    if (listed?.has(lower)) continue;
    out.push(name, value);
  }
  out.push('x-forwarded-for', xff === undefined ? fwd.clientIp : `${xff}, ${fwd.clientIp}`);
  out.push('x-forwarded-proto', fwd.proto);
  if (host !== undefined) out.push('x-forwarded-host', host);
  return out;
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

/** Response headers for the client, from undici's raw Buffer pairs. */
export function clientResponseHeaders(raw: readonly Buffer[]): string[] {
  const strings: string[] = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) strings[i] = (raw[i] as Buffer).toString('latin1');
  const listed = connectionListed(strings);
  const out: string[] = [];
  for (let i = 0; i < strings.length; i += 2) {
    const lower = (strings[i] as string).toLowerCase();
    if (RESPONSE_HOP_BY_HOP.has(lower) || listed?.has(lower)) continue;
    out.push(strings[i] as string, strings[i + 1] as string);
  }
  return out;
}
