/**
 * Planner statistics for the tables conversion filled. Rows written by COPY leave a table without
 * statistics until autovacuum analyzes it (a minute or more later on a default server); until then
 * the planner guesses from the table's size alone. On the example wiki that made v2's recent-changes
 * read a hash join of every revision (27 ms) instead of an index scan (3.3 ms after ANALYZE), and the
 * runtime test's latency gate rightly blocked the switch. pg_upgrade leaves this step to the user
 * (`vacuumdb --analyze-in-stages`); Imago takes it itself, once the copy is done.
 *
 * Only tables without statistics are analyzed, so a resumed conversion analyzes what a crash left
 * out and nothing twice. ANALYZE reads a fixed-size sample (300 × default_statistics_target rows)
 * and takes a lock that lets writes through, so it runs beside the stream's apply.
 */
import { connectClients } from '../database.js';
import { quoteQualified } from '../sql.js';

/** ANALYZEs the target tables (`imago.targets`) that have no statistics yet; returns their names. */
export async function analyzeTargets(url: string, parallel: number): Promise<string[]> {
  const [catalog] = await connectClients([url, 'new']);
  let tables: string[];
  try {
    const { rows: targets } = await catalog.query<{ name: string }>('SELECT name FROM imago.targets');
    const { rows } = await catalog.query<{ name: string }>(
      `SELECT t.name FROM unnest($1::text[]) AS t(name)
         JOIN pg_class c ON c.oid = to_regclass(t.name)
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname)
        ORDER BY c.relpages DESC, t.name`,
      [targets.map((t) => quoteQualified(t.name))],
    );
    tables = rows.map((r) => r.name);
  } finally {
    await catalog.end().catch(() => {});
  }
  if (tables.length === 0) return [];
  // Largest first, each connection taking the next table: the longest ANALYZE starts earliest.
  const queue = [...tables];
  const width = Math.max(1, Math.min(parallel, tables.length));
  const clients = await connectClients(
    ...Array.from({ length: width }, () => [url, 'new'] as [string, string]),
  );
  try {
    await Promise.all(
      clients.map(async (client) => {
        for (let table = queue.shift(); table !== undefined; table = queue.shift())
          await client.query(`ANALYZE ${table}`);
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
  return tables;
}
