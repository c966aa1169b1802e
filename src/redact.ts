/**
 * Secrets never reach logs, reports or errors: connection passwords, bearer tokens, JWTs, credential
 * headers and token- or password-like JSON fields are masked.
 */
export const MASK = '***';

/**
 * Parts of names that mark a secret: a JSON field, form field, query parameter or header whose name
 * contains one (ignoring case, `_`, `-` and `.`) holds one. `token` covers `access_token`,
 * `refreshToken` and `X-Auth-Token`; `apikey` covers `api_key` and `X-Api-Key`.
 */
export const SECRET_NAME_PARTS: readonly string[] = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'apikey',
  'accesskey',
  'privatekey',
  'credential',
  'jwt',
  'authorization',
  'cookie',
  'session',
];

/** Headers always masked whole in what Imago shows (besides names matching the parts above). */
export const SECRET_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
];

/** True when `name` contains one of `parts` (already normalised: lower case, no separators). */
export function isSecretName(name: string, parts: readonly string[] = SECRET_NAME_PARTS): boolean {
  const normalised = name.toLowerCase().replace(/[-_.\s]/g, '');
  return parts.some((p) => normalised.includes(p));
}

/** Name parts as isSecretName compares them. */
export function normaliseNameParts(parts: readonly string[]): string[] {
  return parts.map((p) => p.toLowerCase().replace(/[-_.\s]/g, '')).filter(Boolean);
}

export function redactUrl(url: string): string {
  // Up to the last '@': a password may contain '@' (or '/') itself; masking too much is the safe side.
  return url.replace(/(\/\/[^:/@\s]+:)\S*@/, '$1***@');
}

/** A JSON Web Token: base64url header and payload (both JSON objects: `eyJ`), then a signature. */
const JWT = /\beyJ[\w-]{2,}\.eyJ[\w-]{2,}\.[\w-]*/g;

/**
 * A JSON member whose value is a string: `"name": "value"` (escapes inside both kept whole), also one
 * cut short at the end of the text (a body shown only in part).
 */
const JSON_STRING_MEMBER = /"((?:[^"\\\n]|\\.)*)"(\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)/g;

/** String values of JSON members named like a secret, in any text (a body, a message, a log line). */
export function redactJsonFields(text: string, parts: readonly string[] = SECRET_NAME_PARTS): string {
  if (!text.includes('"')) return text;
  return text.replace(JSON_STRING_MEMBER, (member, name: string, colon: string) =>
    isSecretName(name, parts) ? `"${name}"${colon}"${MASK}"` : member,
  );
}

export function redactJwts(text: string): string {
  return text.includes('eyJ') ? text.replace(JWT, MASK) : text;
}

/** Imago's own credentials, always masked: connection-string passwords and bearer tokens. */
export function redactCredentials(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)\S*@/g, '$1***@')
    .replace(/(password=)\S+/gi, '$1***')
    .replace(/(Bearer\s+)\S+/gi, '$1***');
}

/** Credential header lines (`Authorization: …`, `Cookie: …`), as a request dump shows them. */
export function redactHeaderLines(text: string): string {
  return text.replace(/^(\s*(?:proxy-)?authorization|\s*(?:set-)?cookie)(\s*:\s*)\S.*$/gim, `$1$2${MASK}`);
}

/** What every line Imago prints or stores for people goes through. */
export function redactText(text: string): string {
  return redactCredentials(redactHeaderLines(redactJsonFields(redactJwts(text))));
}

/** Strings of a value masked whole (the value sits under a secret's name); its structure kept. */
export function maskStrings(value: unknown): unknown {
  if (typeof value === 'string') return MASK;
  if (Array.isArray(value)) return value.map(maskStrings);
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskStrings(v)]));
  return value;
}

/**
 * A JSON-like value (a command's result, a journal event's detail) with its secret-named members
 * masked and its strings redacted as text. Walked, not its JSON text redacted: `password=…` in a
 * string would otherwise take the closing quote with it.
 */
export function redactValue(
  value: unknown,
  {
    parts = SECRET_NAME_PARTS,
    text = redactText,
  }: { parts?: readonly string[]; text?: (s: string) => string } = {},
): unknown {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return text(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype)
      return Object.fromEntries(
        Object.entries(v).map(([k, inner]) => [k, isSecretName(k, parts) ? maskStrings(inner) : walk(inner)]),
      );
    return v;
  };
  return walk(value);
}
