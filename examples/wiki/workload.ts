/**
 * The wiki's live workload for the demo and the benchmarks — three reads to one write: page reads,
 * histories and recent changes; edits of seeded pages and a few page creations. Every write carries a
 * unique comment (or title) so that the durability check can find it in the new database.
 */
import pg from 'pg';
import type { LoadRequest } from '../../src/bench/load.js';

export const VERSION_HEADER = 'x-wiki-version';

export function wikiOperations(pages: number, runId: string) {
  let created = 0;
  return (worker: number, seq: number): LoadRequest => {
    const page = `Page_${1 + Math.floor(Math.random() * pages)}`;
    const roll = Math.random();
    if (roll < 0.5) return { method: 'GET', path: `/wiki/${page}` };
    if (roll < 0.65) return { method: 'GET', path: `/wiki/${page}/history` };
    if (roll < 0.75) return { method: 'GET', path: '/recent?limit=20' };
    const id = `${runId}-w${worker}-${seq}`;
    if (roll < 0.97) {
      return {
        method: 'POST',
        path: `/wiki/${page}`,
        body: { text: `Edited by ${id}: Grüße – 東京`, user: `worker${worker}`, comment: id },
        write: { kind: 'edit', id },
      };
    }
    const title = `New_${runId}_${worker}_${created++}`;
    return {
      method: 'PUT',
      path: `/wiki/${title}`,
      body: { text: `Created by ${id}`, user: `worker${worker}`, comment: id },
      write: { kind: 'create', id },
    };
  };
}

/**
 * The acknowledged writes missing from a v2 database: an edit must be a revision with its comment,
 * a creation a revision with its comment whose page exists.
 */
export async function missingWrites(databaseUrl: string, ids: string[]): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ rev_comment: string }>(
      `SELECT r.rev_comment FROM revision r JOIN page p ON p.page_id = r.rev_page WHERE r.rev_comment = ANY($1::text[])`,
      [ids],
    );
    const found = new Set(rows.map((r) => r.rev_comment));
    return ids.filter((id) => !found.has(id));
  } finally {
    await client.end();
  }
}
