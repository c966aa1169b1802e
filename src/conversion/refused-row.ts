/**
 * A row the new database refuses (unique, not-null, check or foreign-key violation, or a value its
 * column's type refuses: too long for a varchar(n), out of an integer's range) is the user's to fix —
 * in the transform or in the new schema — not an internal error: it is reported naming the target
 * table, the constraint with its columns (or the column and type) and PostgreSQL's detail, and the
 * source row that produced it, with what to do. Nothing of the refused change is applied or
 * acknowledged, so the upgrade goes on from there once the transform is fixed.
 */
import type pg from 'pg';
import { ImagoError } from '../errors.js';
import { quoteIdent, tableLabel } from '../sql.js';

const KINDS = {
  '23505': 'unique',
  '23502': 'not-null',
  '23514': 'check',
  '23503': 'foreign-key',
  // A value the column's type refuses (a transform's output, or a type the new schema narrowed).
  '22001': 'value too long',
  '22003': 'value out of range',
  '22008': 'value out of range',
  '22P02': 'invalid value',
  '22007': 'invalid value',
} as const;

/** The kinds that are about a value, not a constraint. */
const VALUE_KINDS: ReadonlySet<Kind> = new Set(['value too long', 'value out of range', 'invalid value']);

type Kind = (typeof KINDS)[keyof typeof KINDS];

/** PostgreSQL's error fields a violation carries (pg's DatabaseError). */
export interface PgViolation {
  code: keyof typeof KINDS;
  message: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  detail?: string;
  /** Where it happened; for COPY `COPY post, line 3, column slug: "…"`. */
  where?: string;
}

export function isRefusedRow(err: unknown): err is PgViolation {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code in KINDS;
}

/** Where the refused row came from. */
export interface ViolationSource {
  /** The bulk copy or the change stream. */
  during: 'the bulk copy' | 'the change stream';
  sourceTable: string;
  /** The source row's key as Imago spells it (a JSON array of its values); unknown if not found. */
  sourceKey?: string;
  /** For the stream: which change of which source transaction. */
  at?: string;
  /** The constraint's definition (pg_get_constraintdef / pg_get_indexdef), when it could be read. */
  definition?: string;
  /** The target table, when PostgreSQL's error does not name it (a value its type refuses). */
  targetTable?: string;
}

export class RefusedRowError extends ImagoError {
  readonly kind: Kind;
  readonly targetTable: string;
  readonly constraintName: string | undefined;

  constructor(err: PgViolation, source: ViolationSource) {
    const kind = KINDS[err.code];
    const target = err.table
      ? tableLabel({ schema: err.schema ?? 'public', name: err.table })
      : source.targetTable
        ? tableLabel(source.targetTable)
        : 'the new database';
    const constraint = err.constraint ?? (err.column ? `NOT NULL on ${err.column}` : undefined);
    const sourceRow = `${source.sourceTable} row ${source.sourceKey ?? '(its key could not be told)'}`;
    const column = err.column ?? /\bcolumn ([^:]+):/.exec(err.where ?? '')?.[1];
    const refused = VALUE_KINDS.has(kind)
      ? `${err.message}${column ? ` (column ${column})` : ''}`
      : `${kind} constraint ${constraint ?? '(unnamed)'} violated${source.definition ? ` (${source.definition})` : ''}${err.detail ? `: ${err.detail}` : `: ${err.message}`}`;
    const parts = [
      `the new database refused a row for ${target} during ${source.during}: ${refused}`,
      `; the row was produced by ${sourceRow}`,
      source.at ? ` (${source.at})` : '',
    ];
    super(
      parts.join(''),
      `${target}${err.constraint ? ` ${err.constraint}` : ''} ← ${sourceRow}`,
      hintFor(kind, err, source),
      {
        cause: err,
      },
    );
    this.name = 'RefusedRowError';
    this.kind = kind;
    this.targetTable = target;
    this.constraintName = err.constraint;
  }
}

function hintFor(kind: Kind, err: PgViolation, source: ViolationSource): string {
  const transform = `${source.sourceTable}'s transform`;
  const then =
    source.during === 'the bulk copy'
      ? 'then run it again: the copy starts over'
      : 'then run it again: nothing past the last applied transaction was acknowledged, so the stream resumes with this change';
  switch (kind) {
    case 'unique':
      return `several source rows produce the same value: dedupe them in ${transform} (e.g. suffix a duplicate slug with the row's id), or relax the constraint in the new schema; ${then}`;
    case 'not-null':
      return `give ${err.column ?? 'the column'} a value in ${transform}, or let the new schema allow NULL or give it a default; ${then}`;
    case 'check':
      return `make ${transform} produce values the check accepts, or relax the check in the new schema; ${then}`;
    case 'value too long':
    case 'value out of range':
    case 'invalid value':
      return `make ${transform} produce values the column's type accepts (shorten or check them), or widen the column's type in the new schema (imago plan warns of narrowed columns); ${then}`;
    case 'foreign-key':
      return `the row refers to a row the new database does not have (or still has rows referring to it): produce the referenced rows first (order the tables, \`after\`), skip such rows in ${transform}, or relax the constraint; ${then}`;
  }
}

/** The violated constraint's definition, read after the failed transaction (undefined if unknown). */
export async function constraintDefinition(client: pg.Client, err: PgViolation): Promise<string | undefined> {
  if (!err.constraint || !err.table) return undefined;
  const schema = quoteIdent(err.schema ?? 'public');
  const { rows } = await client
    .query<{ definition: string | null }>(
      // A constraint of the table, or a unique index that is not one (CREATE UNIQUE INDEX).
      `SELECT coalesce(
         (SELECT pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = to_regclass($1) AND conname = $3),
         (SELECT pg_get_indexdef(to_regclass($2)))) AS definition`,
      [`${schema}.${quoteIdent(err.table)}`, `${schema}.${quoteIdent(err.constraint)}`, err.constraint],
    )
    .catch(() => ({ rows: [] as { definition: string | null }[] }));
  return rows[0]?.definition ?? undefined;
}
