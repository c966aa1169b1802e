/**
 * Dropping an upgrade's capture from the old database without a conversion running (an abort after
 * a crash, a finish resumed mid-way, a start over): the slot once its walsender is gone, then the
 * publication. Either may already be gone; the application's data is never touched.
 */
import { connectClient } from '../database.js';
import { publicationName, slotName } from './names.js';
import { dropPublication } from './publication.js';
import { dropSlot, releaseSlot } from './slot.js';

export async function dropCapture(oldUrl: string, upgrade: string): Promise<void> {
  const client = await connectClient(oldUrl, 'old');
  try {
    await releaseSlot(client, slotName(upgrade)).catch(() => {});
    await dropSlot(client, slotName(upgrade));
    await dropPublication(client, publicationName(upgrade));
  } finally {
    await client.end().catch(() => {});
  }
}
