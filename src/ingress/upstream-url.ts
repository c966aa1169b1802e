/**
 * What a backend URL may be, checked in one place for every way one arrives (options, the command
 * line, the control endpoint, the state file): the proxy speaks plain HTTP to a host and port, with an
 * optional path prefix. Anything it would not honour (another scheme, credentials, a query) is refused
 * before it is applied or saved, naming the URL (passwords masked), rather than failing later where the
 * URL is no longer in sight (a node that cannot restart from its own state file).
 */
import { ImagoError } from '../errors.js';
import { redactUrl } from '../redact.js';

export const UPSTREAM_URL_HINT =
  'give backends as http://host:port, optionally with a path prefix (TLS ends at the ingress or in front of it)';

/** Why `url` cannot be a backend, naming it; undefined when it can. */
export function upstreamUrlProblem(url: string): string | undefined {
  const named = `'${redactUrl(url)}'`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `${named} is not a URL`;
  }
  if (parsed.protocol !== 'http:') return `${named} is not an http:// URL`;
  if (parsed.hostname === '') return `${named} names no host`;
  if (parsed.username !== '' || parsed.password !== '')
    return `${named} carries credentials, which the ingress would not send`;
  if (parsed.search !== '' || parsed.hash !== '')
    return `${named} has a query or fragment, which the ingress would not send`;
  return undefined;
}

/** Throws an ImagoError naming the first URL that cannot be a backend of `universe`. */
export function checkUpstreamUrls(universe: string, urls: readonly string[]): void {
  for (const url of urls) {
    const problem = upstreamUrlProblem(url);
    if (problem !== undefined)
      throw new ImagoError(
        `upstream of universe '${universe}': ${problem}`,
        redactUrl(url),
        UPSTREAM_URL_HINT,
      );
  }
}
