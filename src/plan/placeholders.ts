/**
 * The placeholders a plan's app `env` values may use, filled in when the driver starts the app:
 * `{{new.database}}` (the whole connection string, as `{{new.database.url}}`) and its parts,
 * `{{new.database.host}}`, `.port`, `.user` (or `.username`), `.password`, `.name` (or `.database`),
 * and the same for `old`. An app that takes DB_HOST, DB_PORT, DB_USERNAME… gets each part, decoded
 * from the URL's percent-encoding; the port is 5432 when the URL gives none, the database name the
 * user's when it gives none (PostgreSQL's own defaults).
 */

export interface DatabaseUrls {
  old: string;
  new: string;
}

/** One part of a connection string: `raw` as the plan or the driver has it, `url` parsed. */
type Part = (url: URL, raw: string) => string;

const PARTS: Readonly<Record<string, Part>> = {
  '': (_, raw) => raw,
  url: (_, raw) => raw,
  host: (u) => u.searchParams.get('host') ?? u.hostname.replace(/^\[(.*)\]$/, '$1'),
  port: (u) => u.port || (u.searchParams.get('port') ?? '5432'),
  user: (u) => decodeURIComponent(u.username),
  username: (u) => decodeURIComponent(u.username),
  password: (u) => decodeURIComponent(u.password),
  name: databaseName,
  database: databaseName,
};

function databaseName(u: URL): string {
  return decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username);
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** The placeholders of one universe, as written in a plan. */
export function knownPlaceholders(universe: 'old' | 'new'): string[] {
  return Object.keys(PARTS).map((part) => `{{${universe}.database${part ? `.${part}` : ''}}}`);
}

/** What to say of an unknown placeholder: the ones that exist (of the universe it seems to mean). */
export function placeholderHint(unknown: string): string {
  const universe = /^\{\{\s*old\b/.test(unknown) ? 'old' : 'new';
  const other = universe === 'old' ? 'new' : 'old';
  return `known: ${knownPlaceholders(universe).join(', ')} (and the same with ${other})`;
}

/** Parses `new.database.host` into the universe and part, or undefined when it names none. */
function parse(name: string): { universe: 'old' | 'new'; part: Part } | undefined {
  const m = /^(old|new)\.database(?:\.([a-z]+))?$/.exec(name);
  const part = m ? PARTS[m[2] ?? ''] : undefined;
  return m && part ? { universe: m[1] as 'old' | 'new', part } : undefined;
}

/** The placeholders in `value` that name nothing (`{{new.database.hostname}}`), as written. */
export function unknownPlaceholders(value: string): string[] {
  return [...value.matchAll(PLACEHOLDER)].filter((m) => !parse(m[1] ?? '')).map((m) => m[0]);
}

/** True when `value` holds any placeholder (known or not). */
export function hasPlaceholder(value: string): boolean {
  return new RegExp(PLACEHOLDER.source).test(value);
}

/** `value` with each placeholder replaced by its universe's database URL or the part it names. */
export function fillPlaceholders(value: string, databases: DatabaseUrls): string {
  return value.replace(PLACEHOLDER, (whole, name: string) => {
    const found = parse(name);
    // Validation refused unknown placeholders already; one left here stays as written.
    if (!found) return whole;
    const raw = databases[found.universe];
    return found.part(new URL(raw), raw);
  });
}

/** The passwords the placeholders can hand an app: to be masked in whatever Imago shows of its log. */
export function databasePasswords(databases: DatabaseUrls): string[] {
  return [databases.old, databases.new]
    .map((url) => decodeURIComponent(new URL(url).password))
    .filter((p) => p.length > 0);
}
