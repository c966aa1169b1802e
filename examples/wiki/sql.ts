/**
 * SQL shared by both wiki versions. Timestamps are formatted by PostgreSQL, not JavaScript (whose Date
 * drops microseconds), so v1 and v2 return byte-identical strings for the same stored value.
 */
import type pg from 'pg';

/** ISO-8601 UTC with microseconds, e.g. `2024-01-01T00:00:00.000000Z`, of a timestamptz expression. */
export function isoUtc(expression: string): string {
  return `to_char((${expression}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** Serialises concurrent schema creation (CREATE TABLE IF NOT EXISTS races on the catalog otherwise). */
export const SCHEMA_LOCK = `SELECT pg_advisory_xact_lock(hashtext('imago-wiki-schema'))`;

/**
 * Runs `work` in one transaction on a pooled connection; rolls back when it throws or returns
 * `undefined` (a refused write, e.g. a missing page), so nothing half-done is ever committed.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T | undefined>,
): Promise<T | undefined> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query(result === undefined ? 'ROLLBACK' : 'COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    // A connection whose rollback failed is in an unknown state: drop it rather than reuse it.
    client.release(broken);
  }
}
