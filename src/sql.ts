/**
 * Quoting for SQL that Imago builds itself (identifiers from catalogs and plans, literals in
 * simple-protocol scripts and in statements that take no parameters). One place, so that every
 * statement escapes the same way.
 */

/** "name", with embedded quotes doubled. */
export function quoteIdent(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

/** "schema"."name" from `schema.name` (or just "name"). */
export function quoteQualified(name: string): string {
  return name.split('.').map(quoteIdent).join('.');
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
