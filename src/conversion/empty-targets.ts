/**
 * Emptying the target tables before an interrupted copy starts over. One TRUNCATE of every table
 * conversion wrote and the lineage — but PostgreSQL refuses to truncate a table another table's
 * foreign key points at unless that table is truncated too. A table conversion did not write (v2's
 * own, say an audit log referencing a converted table) is never emptied behind the user's back: when
 * it is empty it is locked and truncated with the targets (nothing lost, and nothing can slip a row
 * in meanwhile); when it holds rows the copy stops with an error naming it, and nothing is emptied.
 */
import type pg from 'pg';
import { ImagoError } from '../errors.js';
import { quoteQualified } from '../sql.js';

/** A table outside the conversion, holding rows, references a target table that must be emptied. */
export class ReferencedTargetError extends ImagoError {
  constructor(
    readonly referencing: string,
    readonly constraint: string,
    readonly target: string,
  ) {
    super(
      `cannot start the copy over: ${target} must be emptied, but ${referencing} (not written by conversion) holds rows and references it (foreign key ${constraint})`,
      referencing,
      `empty ${referencing} in the new database, or drop its foreign key ${constraint} until the copy is done, then run again; nothing was emptied`,
    );
    this.name = 'ReferencedTargetError';
  }
}

interface Reference {
  referencing: string;
  constraint: string;
  target: string;
}

/** Foreign keys from tables outside `tables` to tables in it. */
async function referencesInto(client: pg.Client, tables: readonly string[]): Promise<Reference[]> {
  const { rows } = await client.query<Reference>(
    `SELECT f.conrelid::regclass::text AS referencing, f.conname AS constraint, f.confrelid::regclass::text AS target
       FROM pg_constraint f
      WHERE f.contype = 'f' AND f.confrelid = ANY($1::text[]::regclass[])
        AND NOT f.conrelid = ANY($1::text[]::regclass[])
      ORDER BY 1, 2`,
    [tables],
  );
  return rows;
}

/** Empties every target table conversion wrote and the lineage (see the file's comment). */
export async function emptyTargets(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ name: string }>('SELECT name FROM imago.targets');
  const tables = [...rows.map((r) => quoteQualified(r.name)), 'imago.lineage'];
  await client.query('BEGIN');
  try {
    // Transitively: an empty referencing table may itself be referenced from further out.
    for (let refs = await referencesInto(client, tables); refs.length > 0;) {
      for (const ref of refs) {
        if (tables.includes(ref.referencing)) continue;
        await client.query(`LOCK TABLE ${ref.referencing} IN ACCESS EXCLUSIVE MODE`);
        const { rows: held } = await client.query(`SELECT 1 FROM ${ref.referencing} LIMIT 1`);
        if (held.length > 0) throw new ReferencedTargetError(ref.referencing, ref.constraint, ref.target);
        tables.push(ref.referencing);
      }
      refs = await referencesInto(client, tables);
    }
    await client.query(`TRUNCATE ${tables.join(', ')}`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
