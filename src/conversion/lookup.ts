/**
 * Lookups into the target database for N:1 conversions (a revision finds its page by title). Values
 * come back in PostgreSQL's text form, like source rows.
 */
import type pg from 'pg';
import type { Row } from '../capture/change.js';
import type { TargetValue } from './api.js';
import { quote, quoteQualified } from './target.js';

/** Keeps every value as the text PostgreSQL sent. */
export const textTypes = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

export async function lookupIn(
  client: pg.Client,
  table: string,
  where: Record<string, TargetValue>,
): Promise<Row | undefined> {
  const columns = Object.keys(where);
  const { rows } = await client.query<Row>({
    text: `SELECT * FROM ${quoteQualified(table)} WHERE ${columns.map((c, i) => `${quote(c)} = $${i + 1}`).join(' AND ') || 'true'} LIMIT 1`,
    values: columns.map((c) => {
      const v = where[c];
      return typeof v === 'bigint' ? v.toString() : v;
    }),
    types: textTypes,
  });
  return rows[0];
}

/**
 * During the bulk copy the target only grows, so a found row stays valid: cache hits (bounded) to
 * spare a round trip per row when many source rows look up the same target row.
 */
export function cachedLookup(client: pg.Client, limit = 100_000) {
  const cache = new Map<string, Row>();
  return async (table: string, where: Record<string, TargetValue>): Promise<Row | undefined> => {
    const key = `${table}\0${JSON.stringify(where, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const row = await lookupIn(client, table, where);
    if (row) {
      if (cache.size >= limit) cache.delete(cache.keys().next().value as string);
      cache.set(key, row);
    }
    return row;
  };
}
