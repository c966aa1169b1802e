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
 * migration) fails it rather than leaving the switch waiting.
 */
import type pg from 'pg';
import { connectClients } from '../database.js';
import { quoteQualified } from '../sql.js';

const LOCK_TIMEOUT = '5s';

export interface AnalyzeResult {
  /** Tables analyzed, largest first. */
  analyzed: string[];
  /** Tables that still have no statistics after it (ANALYZE skips, with a notice, tables the role may not maintain). */
  missing: string[];
}

/** Target tables (`imago.targets`, quoted) that were never analyzed, largest first. */
async function unanalyzed(client: pg.Client): Promise<string[]> {
  const { rows: targets } = await client.query<{ name: string }>('SELECT name FROM imago.targets');
  const { rows } = await client.query<{ name: string }>(
    `SELECT t.name FROM unnest($1::text[]) AS t(name)
       JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)
      WHERE s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
      ORDER BY pg_relation_size(s.relid) DESC, t.name`,
    [targets.map((t) => quoteQualified(t.name))],
  );
  return rows.map((r) => r.name);
}

/**
 * ANALYZEs the target tables never analyzed, on up to `parallel` connections. An abort ends the
 * connections (their ANALYZE is cancelled with them) and rejects.
 */
export async function analyzeTargets(
  url: string,
  parallel: number,
  signal?: AbortSignal,
): Promise<AnalyzeResult> {
  const [catalog] = await connectClients([url, 'new']);
  const abort = () => void catalog.end().catch(() => {});
  signal?.addEventListener('abort', abort);
  try {
    const tables = await unanalyzed(catalog);
    if (tables.length === 0) return { analyzed: [], missing: [] };
    // Each connection takes the next table: the longest ANALYZE starts earliest.
    const queue = [...tables];
    const width = Math.max(1, Math.min(parallel, tables.length));
    const clients = await connectClients(
      ...Array.from({ length: width }, () => [url, 'new'] as [string, string]),
    );
    const end = () => Promise.all(clients.map((c) => c.end().catch(() => {})));
    signal?.addEventListener('abort', () => void end());
    try {
      signal?.throwIfAborted();
      await Promise.all(
        clients.map(async (client) => {
          await client.query(`SET lock_timeout = '${LOCK_TIMEOUT}'`);
          for (let table = queue.shift(); table !== undefined; table = queue.shift())
            await client.query(`ANALYZE ${table}`);
        }),
      );
    } finally {
      await end();
    }
    return { analyzed: tables, missing: await unanalyzed(catalog) };
  } finally {
    signal?.removeEventListener('abort', abort);
    await catalog.end().catch(() => {});
  }
}
