/**
 * Planner statistics for the tables conversion filled. Rows written by COPY leave a table without
 * statistics until autovacuum analyzes it (a minute or more later on a default server); until then
 * the planner guesses from the table's size alone. On the example wiki that made v2's recent-changes
 * read a hash join of every revision (27 ms) instead of an index scan (3.3 ms after ANALYZE), and the
 * runtime test's latency gate rightly blocked the switch. pg_upgrade leaves this step to the user
 * (`vacuumdb --analyze-in-stages`); Imago takes it itself, once the copy is done.
 *
 * Only tables never analyzed (by anyone: `last_analyze` and `last_autoanalyze` both unset) are
 * analyzed, so a resumed conversion analyzes what a crash left out and nothing twice. ANALYZE reads
 * a fixed-size sample (300 × default_statistics_target rows) and its lock lets writes through, so it
 * runs beside the stream's apply; a lock it cannot get within LOCK_TIMEOUT (a VACUUM FULL, a long
 * migration) fails that table's ANALYZE (reported, the others go on) rather than leaving the switch
 * waiting.
 */
import type pg from 'pg';
import { connectClients } from '../database.js';
import { errorMessage } from '../errors.js';
import { quoteQualified } from '../sql.js';

const LOCK_TIMEOUT = '5s';

export interface AnalyzeResult {
  /** Tables analyzed, largest first. */
  analyzed: string[];
  /** Tables that still have no statistics after it (ANALYZE skips, with a notice, tables the role may not maintain). */
  missing: string[];
  /** Tables whose ANALYZE failed, with why. */
  failed: { table: string; error: string }[];
}

/**
 * Target tables (`imago.targets`, quoted) that were never analyzed, largest first by the statistics
 * counters: pg_relation_size would wait for the lock of a table someone holds (what LOCK_TIMEOUT is for).
 */
async function unanalyzed(client: pg.Client): Promise<string[]> {
  const { rows: targets } = await client.query<{ name: string }>('SELECT name FROM imago.targets');
  const { rows } = await client.query<{ name: string }>(
    `SELECT t.name FROM unnest($1::text[]) AS t(name)
       JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)
      WHERE s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
      ORDER BY s.n_live_tup DESC, t.name`,
    [targets.map((t) => quoteQualified(t.name))],
  );
  return rows.map((r) => r.name);
}

/**
 * ANALYZEs the target tables never analyzed, on up to `parallel` connections. A table whose ANALYZE
 * fails (a lock not had in time) is reported in `failed` and the others go on. An abort cancels the
 * running ANALYZEs on the server (a closed connection alone would not stop them: the server notices
 * only when it next talks to the client) and rejects.
 */
export async function analyzeTargets(
  url: string,
  parallel: number,
  signal?: AbortSignal,
): Promise<AnalyzeResult> {
  const [catalog] = await connectClients([url, 'new']);
  /** The ANALYZE connections' server processes, for pg_cancel_backend. */
  const pids: number[] = [];
  const abort = () =>
    void catalog
      .query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids])
      .catch(() => {})
      .finally(() => void catalog.end().catch(() => {}));
  signal?.addEventListener('abort', abort);
  try {
    signal?.throwIfAborted();
    const tables = await unanalyzed(catalog);
    if (tables.length === 0) return { analyzed: [], missing: [], failed: [] };
    // Each connection takes the next table: the longest ANALYZE starts earliest.
    const queue = [...tables];
    const failed: { table: string; error: string }[] = [];
    const width = Math.max(1, Math.min(parallel, tables.length));
    const workers = await connectClients(
      ...Array.from({ length: width }, () => [url, 'new'] as [string, string]),
    );
    try {
      signal?.throwIfAborted();
      await Promise.all(
        workers.map(async (client) => {
          const { rows } = await client.query<{ pid: number }>(
            `SELECT pg_backend_pid() AS pid, set_config('lock_timeout', $1, false)`,
            [LOCK_TIMEOUT],
          );
          pids.push(rows[0]?.pid ?? 0);
          for (let table = queue.shift(); table !== undefined; table = queue.shift()) {
            signal?.throwIfAborted();
            try {
              await client.query(`ANALYZE ${table}`);
            } catch (err) {
              signal?.throwIfAborted();
              failed.push({ table, error: errorMessage(err) });
            }
          }
        }),
      );
    } finally {
      await Promise.all(workers.map((c) => c.end().catch(() => {})));
    }
    return {
      analyzed: tables.filter((t) => !failed.some((f) => f.table === t)),
      missing: await unanalyzed(catalog),
      failed,
    };
  } finally {
    signal?.removeEventListener('abort', abort);
    await catalog.end().catch(() => {});
  }
}
