/**
 * `imago plan`'s dry run: what the upgrade would create and how long the copy would take, without
 * creating anything. The old database is only read (in a read-only transaction); the copy estimate
 * runs the plan's transforms on a sample of each table (lookups answer "not found", since the new
 * database is not filled yet) and extrapolates by the table's size. Writes into the new database are
 * not in the estimate; docs/driver.md says so.
 */
import pg from 'pg';
import { loadConversion } from '../conversion/load-module.js';
import { describeSourceTables } from '../capture/publication.js';
import { ImagoError, errorMessage } from '../errors.js';
import type { UpgradePlan } from '../plan/index.js';
import { Fence, IngressNode } from '../switchover/index.js';
import { quoteQualified } from '../sql.js';

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
  problems: string[];
}

const SAMPLE_ROWS = 1_000;
const asText = { getTypeParser: () => (value: string) => value };

export async function dryRun(plan: UpgradePlan): Promise<DryRun> {
  const problems: string[] = [];
  const conversion = await loadConversion(plan.conversion);
  const tables = Object.keys(conversion.tables);
  const result: DryRun = {
    name: plan.name,
    creates: {
      old: [
        `publication ${plan.name}_pub on ${tables.join(', ')}`,
        `logical replication slot ${plan.name}_slot (retains WAL until finish or abort)`,
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
    // What the capture will check when it creates the publication, each table on its own so that
    // every one that cannot be captured is named at once.
    for (const table of tables) {
      await client.query('SAVEPOINT capturable');
      try {
        await describeSourceTables(client, [table]);
      } catch (err) {
        problems.push(withHint(err));
      }
      await client.query('ROLLBACK TO SAVEPOINT capturable');
    }
    let seconds = 0;
    for (const table of tables) {
      const estimate = await estimateTable(client, table, conversion.tables[table]);
      result.tables.push(estimate);
      seconds += estimate.rowsPerSecond > 0 ? estimate.rows / estimate.rowsPerSecond : 0;
    }
    result.estimatedCopySeconds = Math.round(seconds * 10) / 10;
    await client.query('COMMIT');
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
  how: Awaited<ReturnType<typeof loadConversion>>['tables'][string] | undefined,
): Promise<TableEstimate> {
  // The name as PostgreSQL quotes it (regclass::text), never the plan's text pasted into SQL.
  const { rows: size } = await client.query<{ n: string; b: string; q: string }>(
    `SELECT greatest(c.reltuples, 0)::bigint::text AS n, pg_table_size(c.oid)::text AS b, c.oid::regclass::text AS q
       FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [quoteQualified(table)],
  );
  const quoted = size[0]?.q;
  if (quoted === undefined) throw new Error(`table ${table} not found`);
  let rows = Number(size[0]?.n ?? 0);
  if (rows === 0) {
    // Never analysed: count (bounded, the dry run must stay quick).
    const { rows: c } = await client.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM (SELECT 1 FROM ${quoted} LIMIT 1000000) x`,
    );
    rows = Number(c[0]?.n ?? 0);
  }
  const started = performance.now();
  const sample = await client.query<Record<string, string | null>>({
    text: `SELECT * FROM ${quoted} LIMIT ${SAMPLE_ROWS}`,
    types: asText,
  });
  let transformErrors = 0;
  if (how && 'transform' in how) {
    const ctx = { lookup: () => Promise.resolve(undefined) };
    for (const row of sample.rows) {
      try {
        await how.transform(row, ctx);
      } catch {
        transformErrors++;
      }
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    table,
    rows,
    bytes: Number(size[0]?.b ?? 0),
    sampled: sample.rows.length,
    transformErrors,
    rowsPerSecond: sample.rows.length > 0 ? Math.round(sample.rows.length / Math.max(seconds, 1e-3)) : 0,
  };
}

/** A problem as the dry run lists it: the error and, for one of Imago's, its hint. */
function withHint(err: unknown): string {
  return err instanceof ImagoError && err.hint ? `${err.message}; ${err.hint}` : errorMessage(err);
}
