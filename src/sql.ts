/**
 * Quoting for SQL that Imago builds itself (identifiers from catalogs and plans, literals in
 * simple-protocol scripts and in statements that take no parameters), and the one reading of a
 * table's name as a plan or a transform spells it. One place, so that every statement escapes the
 * same way and every part of Imago means the same table by the same text.
 *
 * The naming rule: a table is named as PostgreSQL stores it — `User`, `ArticleTag`, `sales.Order` —
 * never folded to lower case as unquoted SQL would be (ORMs such as Prisma create `"User"`, and
 * folding made `User` mean `user` in some places and `User` in others). A quoted spelling is accepted
 * too and means the same table: `"User"`, `public."User"`, `"sales"."Order"`; a name that holds a
 * dot or a double quote must be quoted (`"order.line"`). An unqualified name is in schema `public`
 * (what the change stream reports it under), never wherever a session's search_path points.
 */
import { ImagoError } from './errors.js';

/** "name", with embedded quotes doubled. */
export function quoteIdent(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

/** A table as PostgreSQL stores its name: schema and name, unquoted, case kept. */
export interface TableName {
  readonly schema: string;
  readonly name: string;
}

/** PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), so a longer name can match no table. */
const MAX_IDENTIFIER_BYTES = 63;

export const TABLE_NAME_HINT =
  'spell a table as PostgreSQL stores it (User, public.User) or quoted ("User", public."User"); a name holding a dot or a double quote must be quoted; an unqualified name is in schema public';

/** Parsed spellings: the same few names are read for every row a transform produces. */
const parsed = new Map<string, TableName>();
const PARSED_LIMIT = 10_000;

/**
 * Reads a table's spelling (the rule above). Throws an ImagoError naming the spelling and what is
 * wrong with it; `where` says where it was written (`the conversion's tables`, `a lookup`).
 */
export function parseTableName(spelling: string, where?: string): TableName {
  const known = parsed.get(spelling);
  if (known) return known;
  const parts = splitParts(spelling, where);
  const table =
    parts.length === 1
      ? { schema: 'public', name: parts[0] as string }
      : { schema: parts[0] as string, name: parts[1] as string };
  if (parsed.size >= PARSED_LIMIT) parsed.clear();
  parsed.set(spelling, Object.freeze(table));
  return table;
}

function splitParts(spelling: string, where: string | undefined): string[] {
  const fail = (why: string): never => {
    throw new ImagoError(
      `table name ${JSON.stringify(spelling)}${where ? ` in ${where}` : ''} is malformed: ${why}`,
      spelling,
      TABLE_NAME_HINT,
    );
  };
  if (typeof spelling !== 'string') fail(`expected a string, got ${typeof spelling}`);
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let part: string;
    if (spelling[i] === '"') {
      part = '';
      for (i++; ; i++) {
        if (i >= spelling.length) fail('a quote is not closed');
        if (spelling[i] === '"') {
          if (spelling[i + 1] !== '"') break;
          i++;
        }
        part += spelling[i];
      }
      i++;
      if (part === '') fail('a quoted part is empty');
      if (i < spelling.length && spelling[i] !== '.')
        fail(`${JSON.stringify(spelling.slice(i))} follows a quoted part (a dot was expected)`);
    } else {
      const end = spelling.indexOf('.', i);
      part = spelling.slice(i, end === -1 ? spelling.length : end);
      i += part.length;
      if (part === '') fail(i === 0 ? 'it starts with a dot or is empty' : 'a part is empty');
      if (part.includes('"')) fail(`a double quote inside ${JSON.stringify(part)}: quote the whole part`);
      if (part.trim() !== part) fail(`${JSON.stringify(part)} begins or ends with white space`);
    }
    if (Buffer.byteLength(part) > MAX_IDENTIFIER_BYTES)
      fail(`${JSON.stringify(part)} is longer than PostgreSQL's ${MAX_IDENTIFIER_BYTES} bytes`);
    parts.push(part);
    if (i >= spelling.length) break;
    i++; // the dot
    if (i >= spelling.length) fail('it ends with a dot');
  }
  if (parts.length > 2) fail('expected a table or schema.table, not more parts');
  return parts;
}

const PLAIN_PART = /^[^\s."](?:[^."]*[^\s."])?$/;

/** One part as the canonical spelling writes it: as stored, quoted only when the rule requires. */
const spelledPart = (part: string) => (PLAIN_PART.test(part) ? part : quoteIdent(part));

const keys = new Map<string, string>();

/**
 * The table's canonical spelling, the one Imago keys tables by everywhere (conversion, lineage, the
 * change stream, the journal): `User`, `sales.Order`, `"order.line"` — the schema left out when it is
 * public. Any accepted spelling of a table gives the same key.
 */
export function tableKey(table: TableName | string, where?: string): string {
  if (typeof table === 'string') {
    const known = keys.get(table);
    if (known !== undefined) return known;
    const key = tableKey(parseTableName(table, where));
    if (keys.size >= PARSED_LIMIT) keys.clear();
    keys.set(table, key);
    return key;
  }
  const name = spelledPart(table.name);
  return table.schema === 'public' ? name : `${spelledPart(table.schema)}.${name}`;
}

/** The table as messages name it: the canonical spelling with its schema always (`public.User`). */
export function tableLabel(table: TableName | string, where?: string): string {
  const t = typeof table === 'string' ? parseTableName(table, where) : table;
  return `${spelledPart(t.schema)}.${spelledPart(t.name)}`;
}

/**
 * The table for SQL: `"schema"."name"`, always qualified (never resolved through a search_path).
 * Also what `$1::regclass` and `to_regclass($1)` are given, so that catalog lookups find the same table.
 */
export function quoteQualified(table: TableName | string, where?: string): string {
  const t = typeof table === 'string' ? parseTableName(table, where) : table;
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/**
 * A string literal. E'' syntax with backslashes and quotes escaped reads the same whatever
 * standard_conforming_strings says; NULL for null or undefined.
 */
export function quoteLiteral(value: string | number | bigint | boolean | null | undefined): string {
  if (value === null || value === undefined) return 'NULL';
  const text = typeof value === 'string' ? value : String(value);
  return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}
