/**
 * What the driver checks before it starts anything (the new app, the capture), and what the dry run
 * checks too: every source table of the conversion exists and can be captured (a primary key or a
 * replica identity), every target table exists and has a primary key, and mapped columns whose
 * types narrow are named (target-check.ts). The capture's own checks, made first: a refusal comes
 * before a new app is started that it would leave running (issue 21, item 6). Only read: in
 * read-only transactions, nothing created.
 */
import type pg from 'pg';
import { describeSourceTables, type SourceTable } from '../capture/publication.js';
import type { Row } from '../capture/change.js';
import type { Conversion, TableConversion, TargetRow } from '../conversion/api.js';
import { connectClient, connectClients } from '../database.js';
import { ImagoError } from '../errors.js';
import { quoteQualified } from '../sql.js';
import {
  addOutputs,
  checkTargets,
  declaredRoutes,
  type Routes,
  type TargetFindings,
} from './target-check.js';

/** Rows of each transform table the driver runs through the transform to learn its targets. */
const PREFLIGHT_SAMPLE = 100;

/** Describes the source tables (throws the capture's own ImagoError for one that cannot be captured). */
export async function checkSourceTables(
  oldDatabase: string,
  tables: string[],
  consented: readonly string[] = [],
): Promise<SourceTable[]> {
  const client = await connectClient(oldDatabase, 'old');
  try {
    await client.query('BEGIN READ ONLY');
    return await describeSourceTables(client, tables, consented);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Source rows in text form, as the copy and the stream give them to transforms. */
const asText = { getTypeParser: () => (value: string) => value };

/** Up to `limit` rows of a source table, as a transform sees them. */
export async function sampleRows(client: pg.Client, table: SourceTable, limit: number): Promise<Row[]> {
  const { rows } = await client.query<Record<string, string | null>>({
    text: `SELECT * FROM ${quoteQualified(table)} LIMIT ${limit}`,
    types: asText,
  });
  return rows;
}

/**
 * Runs a transform on sample rows with lookups that find nothing (the new database is not filled
 * yet): the outputs it gives, and how many rows it threw on.
 */
export async function transformSample(
  how: TableConversion,
  rows: readonly Row[],
): Promise<{ outputs: TargetRow[]; errors: number }> {
  const outputs: TargetRow[] = [];
  let errors = 0;
  if (!('transform' in how)) return { outputs, errors };
  const ctx = { lookup: () => Promise.resolve(undefined) };
  for (const row of rows) {
    try {
      const out = await how.transform({ ...row }, ctx);
      if (Array.isArray(out)) outputs.push(...(out as TargetRow[]));
    } catch {
      errors++;
    }
  }
  return { outputs, errors };
}

/** Where each source table's rows go: declared, plus what a sample of its transform wrote. */
export async function routesOf(
  client: pg.Client,
  conversion: Conversion,
  sources: readonly SourceTable[],
  sampleSize = PREFLIGHT_SAMPLE,
): Promise<Map<SourceTable, Routes>> {
  const routes = new Map<SourceTable, Routes>();
  const specs = Object.entries(conversion.tables);
  for (const [i, source] of sources.entries()) {
    const [spelling, how] = specs[i] as [string, TableConversion];
    const declared = declaredRoutes(spelling, how);
    if ('transform' in how)
      addOutputs(
        declared,
        (await transformSample(how, await sampleRows(client, source, sampleSize))).outputs,
      );
    routes.set(source, declared);
  }
  return routes;
}

/** One error for what stops the conversion: the only one, or all of them named. */
export function refusal(problems: readonly ImagoError[]): ImagoError | undefined {
  if (problems.length <= 1) return problems[0];
  return new ImagoError(
    `${problems.length} target tables cannot take the conversion's rows:\n${problems.map((p) => `  ${p.message}; ${p.hint ?? ''}`).join('\n')}`,
    'new.database',
    'fix the new version’s schema (or the conversion), then run imago start again',
  );
}

/**
 * The target side, before the copy: refuses a target that has no primary key, or is missing (unless
 * `missing` is 'later': the driver is about to start an app that may create it; then `pending` says
 * the check must be made again once it is up). Returns the narrowing warnings.
 */
export async function checkTargetTables(
  oldDatabase: string,
  newDatabase: string,
  conversion: Conversion,
  missing: 'refuse' | 'later',
  consented: readonly string[] = [],
): Promise<{ warnings: string[]; pending: boolean }> {
  const [old, target] = await connectClients([oldDatabase, 'old'], [newDatabase, 'new']);
  let findings: TargetFindings;
  try {
    await old.query('BEGIN READ ONLY');
    await target.query('BEGIN READ ONLY');
    const sources = await describeSourceTables(old, Object.keys(conversion.tables), consented);
    findings = await checkTargets(target, await routesOf(old, conversion, sources), missing);
  } finally {
    await Promise.all([old.end().catch(() => {}), target.end().catch(() => {})]);
  }
  const refused = refusal(findings.problems);
  if (refused) throw refused;
  return { warnings: findings.warnings, pending: findings.missing.length > 0 };
}
