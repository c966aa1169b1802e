// Shared by the switchover and driver tests: an old universe (cluster + wiki v1 running as the
// non-superuser role `wiki_app`, so that it can be fenced), N ingress nodes with control endpoints,
// an empty new cluster, and the invariant checks every fault test runs.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startCluster, createDatabase, type Cluster } from '../src/universe/cluster.js';
import { startIngress, type Ingress } from '../src/ingress/index.js';
import { startLoad, mixedAnswers, type LoadResult } from '../src/bench/load.js';
import { seedWiki } from '../examples/wiki/seed.js';
import { createWikiAppRole, WIKI_APP_ROLE } from '../examples/wiki/app-role.js';
import { startWiki as startWikiV1 } from '../examples/wiki/v1/server.js';
import { missingWrites, VERSION_HEADER, wikiOperations } from '../examples/wiki/workload.js';
import type { RunningWiki } from '../examples/wiki/app.js';
import type { IngressNodeSpec } from '../src/plan/index.js';

export const APP_ROLE = WIKI_APP_ROLE;

export interface OldWorld {
  oldCluster: Cluster;
  newCluster: Cluster;
  /** Admin (superuser) URL of the old wiki database; what Imago and hidden writers use. */
  oldDb: string;
  /** The role-restricted URL the old app runs with. */
  appDb: string;
  v1: RunningWiki;
  nodes: Ingress[];
  specs: IngressNodeSpec[];
  token: string;
  close(): Promise<void>;
}

export async function oldWorld({ pages = 100, revisions = 2, nodes = 2 } = {}): Promise<OldWorld> {
  const oldCluster = await startCluster({ name: 'old', ephemeral: true });
  const newCluster = await startCluster({ name: 'new', ephemeral: true });
  const oldDb = await createDatabase(oldCluster, 'wiki');
  await seedWiki(oldDb, { pages, revisionsPerPage: revisions });
  const appDb = await createWikiAppRole(oldDb);
  const v1 = await startWikiV1({ databaseUrl: appDb });
  const token = randomBytes(16).toString('hex');
  const ingress = await Promise.all(
    Array.from({ length: nodes }, (_, i) =>
      startIngress({
        upstreams: { old: [v1.url] },
        route: 'old',
        control: { token, nodeId: `node${i + 1}` },
      }),
    ),
  );
  const specs = ingress.map((n, i) => ({ name: `node${i + 1}`, control: n.control?.url ?? '', token }));
  return {
    oldCluster,
    newCluster,
    oldDb,
    appDb,
    v1,
    nodes: ingress,
    specs,
    token,
    close: async () => {
      for (const n of ingress) await n.close().catch(() => {});
      await v1.close().catch(() => {});
      await oldCluster.stop();
      await newCluster.stop();
    },
  };
}

export async function sql(url: string, statements: string[]): Promise<pg.QueryResult[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const results: pg.QueryResult[] = [];
    for (const s of statements) results.push(await client.query(s));
    return results;
  } finally {
    await client.end();
  }
}

/** Load spread over the given ingress nodes (one generator each). */
export function loadOn(urls: string[], rate: number, pages: number) {
  const runId = randomBytes(4).toString('hex');
  const loads = urls.map((url, i) =>
    startLoad({
      url,
      workers: 4,
      rate: rate / urls.length,
      next: wikiOperations(pages, `${runId}n${i}`),
      versionHeader: VERSION_HEADER,
    }),
  );
  return {
    stop: async (): Promise<LoadResult> => {
      const results = await Promise.all(loads.map((l) => l.stop()));
      return {
        requests: results.reduce((a, r) => a + r.requests, 0),
        failed: results.reduce((a, r) => a + r.failed, 0),
        failures: results.flatMap((r) => r.failures),
        acknowledged: results.flatMap((r) => r.acknowledged),
        latenciesMs: results.flatMap((r) => r.latenciesMs),
        answers: results.flatMap((r) => r.answers),
      };
    },
    count: () => loads.reduce((a, l) => a + l.count(), 0),
  };
}

/** Acknowledged writes missing from a v1 database (the old universe kept serving). */
export async function missingV1(databaseUrl: string, ids: string[]): Promise<string[]> {
  const [r] = await sql(databaseUrl, [
    `SELECT cur_comment AS c FROM cur WHERE cur_comment = ANY('{${ids.map((i) => `"${i}"`).join(',')}}'::text[])
     UNION SELECT old_comment FROM old WHERE old_comment = ANY('{${ids.map((i) => `"${i}"`).join(',')}}'::text[])`,
  ]);
  const found = new Set((r?.rows ?? []).map((row: { c: string }) => row.c));
  return ids.filter((id) => !found.has(id));
}

/**
 * The invariant of every switchover test: each acknowledged write is in the universe that serves
 * afterwards, and no client saw the old version after any client had seen the new one.
 */
export async function checkInvariant(
  observed: LoadResult,
  serving: { universe: 'old' | 'new'; databaseUrl: string },
): Promise<{ lost: string[]; mixed: number }> {
  const ids = observed.acknowledged.map((w) => w.id);
  const lost =
    serving.universe === 'new'
      ? await missingWrites(serving.databaseUrl, ids)
      : await missingV1(serving.databaseUrl, ids);
  return { lost, mixed: mixedAnswers(observed.answers, '1', '2') };
}
