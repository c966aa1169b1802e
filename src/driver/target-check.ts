/**
 * The new database's side of the checks made before anything starts (issue 21, item 6): every
 * target table the conversion writes exists and has a primary key (the copy and the stream upsert by
 * it), and each mapped column whose type narrows the source's is named (a warning: it may be meant).
 * Where the rows go is known from the conversion for identity tables and `sourceKeyIn`, and from a
 * sample of each transform's outputs for the rest. Only read; the dry run and `imago start` share it.
 */
import type pg from 'pg';
import type { SourceTable } from '../capture/publication.js';
import type { TableConversion, TargetRow } from '../conversion/api.js';
import { narrowing } from '../conversion/narrowing.js';
import type { ImagoError } from '../errors.js';
import { keylessTargetError, missingTargetError, targetColumns } from '../conversion/target.js';
import { tableKey, tableLabel } from '../sql.js';

/** Target table → the columns written into it ('all': an identity copy writes every source column). */
export type Routes = Map<string, Set<string> | 'all'>;

/** Where one source table's rows go, as far as the conversion says without running it. */
export function declaredRoutes(source: string, how: TableConversion): Routes {
  const routes: Routes = new Map();
  if ('identity' in how) routes.set(tableKey(how.table ?? source), 'all');
  else
    for (const [table, columns] of Object.entries(how.sourceKeyIn ?? {}))
      routes.set(tableKey(table), new Set(columns));
  return routes;
}

/** Adds what a sample of a transform's outputs wrote. */
export function addOutputs(routes: Routes, outputs: readonly TargetRow[]): void {
  for (const o of outputs) {
    if (typeof o?.table !== 'string' || !o.row) continue;
    let table: string;
    try {
      table = tableKey(o.table);
    } catch {
      continue; // a malformed name: the copy names it with its row
    }
    let columns = routes.get(table);
    if (columns === 'all') continue;
    if (!columns) routes.set(table, (columns = new Set()));
    for (const c of Object.keys(o.row)) columns.add(c);
  }
}

export interface TargetFindings {
  /** What stops the conversion: a missing target, one without a primary key. */
  problems: ImagoError[];
  /** Types that narrow, per mapped column. */
  warnings: string[];
  /** With `missing: 'later'`: the targets not in the new database yet. */
  missing: string[];
}

interface TargetDescription {
  key: string[];
  types: Map<string, string>;
}

/**
 * Checks the targets of every source table. `missing: 'later'` when the driver starts the new app,
 * which may create its schema: a missing table is then listed in `missing`, to be checked once it is up.
 */
export async function checkTargets(
  client: pg.Client,
  routes: ReadonlyMap<SourceTable, Routes>,
  missing: 'refuse' | 'later',
): Promise<TargetFindings> {
  const findings: TargetFindings = { problems: [], warnings: [], missing: [] };
  const described = new Map<string, TargetDescription | undefined>();
  for (const [source, targets] of routes) {
    for (const [table, columns] of targets) {
      if (!described.has(table)) {
        const d = await describeTarget(client, table);
        described.set(table, d);
        if (!d && missing === 'later') findings.missing.push(tableLabel(table));
        else if (!d) findings.problems.push(await missingTargetError(client, table));
        else if (d.key.length === 0) findings.problems.push(keylessTargetError(table));
      }
      const target = described.get(table);
      if (target) findings.warnings.push(...narrowings(source, table, target, columns));
    }
  }
  return findings;
}

async function describeTarget(client: pg.Client, table: string): Promise<TargetDescription | undefined> {
  const rows = await targetColumns(client, table);
  if (rows.length === 0) return undefined;
  return {
    key: rows.filter((r) => r.key).map((r) => r.attname),
    types: new Map(rows.map((r) => [r.attname, r.type])),
  };
}

/** `createdAt`, `created_at` and `CreatedAt` are one column to a mapping between naming styles. */
const styleless = (column: string) => column.replace(/_/g, '').toLowerCase();

/** Each source column → target column of this route whose type narrows it. */
function narrowings(
  source: SourceTable,
  table: string,
  target: TargetDescription,
  columns: Set<string> | 'all',
): string[] {
  const bySource = new Map<string, string>();
  if (columns === 'all') {
    for (const c of source.columns) if (target.types.has(c)) bySource.set(c, c);
  } else {
    // A transform's outputs say which target columns it writes, not from which source column: a
    // target column maps to the source column of its name, in any naming style, when one has it.
    for (const c of columns) {
      const same = source.types.has(c) ? c : source.columns.filter((s) => styleless(s) === styleless(c));
      const from = typeof same === 'string' ? same : same.length === 1 ? same[0] : undefined;
      if (from !== undefined && target.types.has(c)) bySource.set(from, c);
    }
  }
  const warnings: string[] = [];
  for (const [from, to] of bySource) {
    const fromType = source.types.get(from) as string;
    const toType = target.types.get(to) as string;
    const what = narrowing(fromType, toType);
    if (what)
      warnings.push(
        `${tableLabel(source)}.${from} (${fromType}) → ${tableLabel(table)}.${to} (${toType}) ${what}`,
      );
  }
  return warnings;
}
