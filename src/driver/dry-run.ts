/**
 * `imago plan`'s dry run: what the upgrade would create and how long the copy would take, and every
 * check `imago start` makes before it starts anything (preflight.ts), without creating anything.
 * Both databases are only read (in read-only transactions): every source table exists and can be
 * captured, every target table exists and has a primary key, and each mapped column whose type
 * narrows is warned of. The copy estimate runs the plan's transforms on a sample of each table
 * (lookups answer "not found", since the new database is not filled yet) and extrapolates by the
 * table's size. Writes into the new database are not in the estimate; docs/driver.md says so.
 */
import pg from 'pg';
import { loadConversion } from '../conversion/load-module.js';
import { describeSourceTables, type SourceTable } from '../capture/publication.js';
import { publicationName, slotName } from '../capture/names.js';
import type { TableConversion, TargetRow } from '../conversion/api.js';
import { ImagoError, errorMessage } from '../errors.js';
import type { UpgradePlan } from '../plan/index.js';
import { Fence, IngressNode } from '../switchover/index.js';
import { quoteQualified } from '../sql.js';
import { sampleRows, transformSample } from './preflight.js';
import { addOutputs, checkTargets, declaredRoutes, type Routes } from './target-check.js';

export interface TableEstimate {
  table: string;
  rows: number;
  bytes: number;
  sampled: number;
  transformErrors: number;
  rowsPerSecond: number;
}

export interface DryRun {
  name: string;
  creates: { old: string[]; new: string[]; processes: string[] };
  tables: TableEstimate[];
  estimatedCopySeconds: number | null;
  nodes: { name: string; reachable: boolean; route?: string; epoch?: number; error?: string }[];
  fencing: { mode: string; role?: string; ok: boolean; error?: string };
  /** What would stop the upgrade (imago plan exits 1). */
  problems: string[];
  /** What it would do that may not be meant: types that narrow, targets the new app must create. */
  warnings: string[];
}

const SAMPLE_ROWS = 1_000;

export async function dryRun(plan: UpgradePlan): Promise<DryRun> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const conversion = await loadConversion(plan.conversion);
  const tables = Object.keys(conversion.tables);
  const result: DryRun = {
    name: plan.name,
    creates: {
      old: [
        `publication ${publicationName(plan.name)} on ${tables.join(', ')}`,
        `logical replication slot ${slotName(plan.name)} (retains WAL until finish or abort)`,
      ],
      new: [
        ...(plan.new.database === 'embedded' ? ['an embedded PostgreSQL cluster'] : []),
        'schema imago (checkpoint, lineage, targets)',
        `schema imago_control (journal, commands, status)${plan.control.database ? ' in the control database' : ''}`,
      ],
      processes: 'command' in plan.new.app ? [`new app: ${plan.new.app.command.join(' ')}`] : [],
    },
    tables: [],
    estimatedCopySeconds: null,
    nodes: [],
    fencing: { mode: plan.switchover.fencing.mode, role: plan.switchover.fencing.role, ok: true },
    problems,
    warnings,
  };
  result.nodes = await Promise.all(
    plan.ingress.nodes.map(async (spec) => {
      try {
        const s = await new IngressNode(spec).state(2_000);
        return { name: spec.name, reachable: true, route: s.route, epoch: s.epoch };
      } catch (err) {
        problems.push(`ingress node ${spec.name}: ${errorMessage(err)}`);
        return { name: spec.name, reachable: false, error: errorMessage(err) };
      }
    }),
  );
  if (plan.old.database === 'embedded') return result;
  const client = new pg.Client({ connectionString: plan.old.database, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    problems.push(`old database: ${errorMessage(err)}`);
    return result;
  }
  try {
    await client.query('BEGIN READ ONLY');
    const routes = new Map<SourceTable, Routes>();
    let seconds = 0;
    for (const [table, how] of Object.entries(conversion.tables)) {
      // What the capture will check when it creates the publication, each table on its own so that
      // every one that cannot be captured is named at once.
      await client.query('SAVEPOINT capturable');
      let source: SourceTable | undefined;
      try {
        [source] = await describeSourceTables(client, [table], plan.capture.replicaIdentityFull);
      } catch (err) {
        problems.push(withHint(err));
      }
      await client.query('ROLLBACK TO SAVEPOINT capturable');
      if (!source) continue;
      const estimate = await estimateTable(client, table, source, how);
      result.tables.push(estimate.table);
      const t = estimate.table;
      seconds += t.rowsPerSecond > 0 ? t.rows / t.rowsPerSecond : 0;
      const declared = declaredRoutes(table, how);
      addOutputs(declared, estimate.outputs);
      routes.set(source, declared);
    }
    result.estimatedCopySeconds = Math.round(seconds * 10) / 10;
    await client.query('COMMIT');
    await checkNewDatabase(plan, routes, problems, warnings);
    try {
      await new Fence(
        plan.old.database,
        plan.switchover.fencing.mode,
        plan.switchover.fencing.role,
        tables,
      ).plan();
    } catch (err) {
      result.fencing = { ...result.fencing, ok: false, error: errorMessage(err) };
      problems.push(`fencing: ${errorMessage(err)}`);
    }
  } catch (err) {
    problems.push(`old database: ${errorMessage(err)}`);
  } finally {
    await client.end().catch(() => {});
  }
  return result;
}

async function estimateTable(
  client: pg.Client,
  table: string,
  source: SourceTable,
  how: TableConversion,
): Promise<{ table: TableEstimate; outputs: TargetRow[] }> {
  // The name rendered by src/sql.ts, never the plan's text pasted into SQL.
  const relation = quoteQualified(source);
  const { rows: size } = await client.query<{ n: string; b: string }>(
    `SELECT greatest(c.reltuples, 0)::bigint::text AS n, pg_table_size(c.oid)::text AS b
       FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [relation],
  );
  let rows = Number(size[0]?.n ?? 0);
  if (rows === 0) {
    // Never analysed: count (bounded, the dry run must stay quick).
    const { rows: c } = await client.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM (SELECT 1 FROM ${relation} LIMIT 1000000) x`,
    );
    rows = Number(c[0]?.n ?? 0);
  }
  const started = performance.now();
  const sample = await sampleRows(client, source, SAMPLE_ROWS);
  const { outputs, errors } = await transformSample(how, sample);
  const seconds = (performance.now() - started) / 1000;
  return {
    table: {
      table,
      rows,
      bytes: Number(size[0]?.b ?? 0),
      sampled: sample.length,
      transformErrors: errors,
      rowsPerSecond: sample.length > 0 ? Math.round(sample.length / Math.max(seconds, 1e-3)) : 0,
    },
    outputs,
  };
}

/**
 * The new database's side: every target exists (when the driver starts the new app, which may
 * create its schema, a missing one is a warning) and has a primary key; columns whose types narrow.
 */
async function checkNewDatabase(
  plan: UpgradePlan,
  routes: ReadonlyMap<SourceTable, Routes>,
  problems: string[],
  warnings: string[],
): Promise<void> {
  if (plan.new.database === 'embedded') {
    warnings.push(
      'the new database is embedded: imago start checks its target tables once the new app is up, before the copy',
    );
    return;
  }
  const client = new pg.Client({ connectionString: plan.new.database, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('BEGIN READ ONLY');
    const findings = await checkTargets(client, routes, 'command' in plan.new.app ? 'later' : 'refuse');
    problems.push(...findings.problems.map(withHint));
    warnings.push(
      ...findings.missing.map(
        (t) =>
          `target table ${t} is not in the new database yet: the new app must create it when it starts (imago start checks it then, before the copy)`,
      ),
      ...findings.warnings,
    );
  } catch (err) {
    problems.push(`new database: ${errorMessage(err)}`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** A problem as the dry run lists it: the error and, for one of Imago's, its hint. */
function withHint(err: unknown): string {
  return err instanceof ImagoError && err.hint ? `${err.message}; ${err.hint}` : errorMessage(err);
}
