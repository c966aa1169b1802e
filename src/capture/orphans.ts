/**
 * Finds capture left behind by a crashed or abandoned run: Imago marks each publication it creates
 * with a comment naming the upgrade, so its slot and publication can be told apart from the user's
 * own and reported (with the WAL the slot holds) by `imago status`, and dropped on request.
 */
import type pg from 'pg';
import { retainedWalBytes } from './wal-watch.js';
import { quoteIdent, quoteLiteral } from '../sql.js';
import { slotName } from './names.js';

const MARK = 'imago:';

export interface CaptureLeftover {
  /** The upgrade (conversion) name. */
  name: string;
  publication: string;
  slot: string | undefined;
  /** True when a process is streaming from the slot right now. */
  active: boolean;
  retainedWalBytes: number | undefined;
  createdAt: string | undefined;
}

/** Marks a publication as Imago's, with the upgrade's name and when it was created. */
export async function markPublication(client: pg.Client, publication: string, name: string): Promise<void> {
  const comment = `${MARK}${JSON.stringify({ name, createdAt: new Date().toISOString() })}`;
  await client.query(`COMMENT ON PUBLICATION ${quoteIdent(publication)} IS ${quoteLiteral(comment)}`);
}

/** Every Imago publication on the old database, with its slot; `active` false means nothing streams from it. */
export async function findCapture(client: pg.Client): Promise<CaptureLeftover[]> {
  const { rows } = await client.query<{ pubname: string; comment: string }>(
    `SELECT p.pubname, d.description AS comment FROM pg_publication p
       JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_publication'::regclass
      WHERE d.description LIKE 'imago:%'`,
  );
  const found: CaptureLeftover[] = [];
  for (const row of rows) {
    let meta: { name: string; createdAt?: string };
    try {
      meta = JSON.parse(row.comment.slice(MARK.length)) as { name: string; createdAt?: string };
    } catch {
      continue; // someone else's comment that happens to start with "imago:"
    }
    const ownSlot = slotName(meta.name);
    const slot = await client.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [ownSlot],
    );
    found.push({
      name: meta.name,
      publication: row.pubname,
      slot: slot.rows[0] ? ownSlot : undefined,
      active: slot.rows[0]?.active ?? false,
      retainedWalBytes: slot.rows[0] ? await retainedWalBytes(client, ownSlot) : undefined,
      createdAt: meta.createdAt,
    });
  }
  return found;
}
