/**
 * What the driver checks in the old database before it starts anything (the new app, the capture):
 * every source table of the conversion exists and can be captured (a primary key or a replica
 * identity). These are the checks the capture makes when it creates the publication; made first,
 * a table that cannot be captured is refused before a new app is started that the refusal would
 * leave running (issue 21, item 6). Only read: in a read-only transaction, nothing created.
 */
import { describeSourceTables, type SourceTable } from '../capture/publication.js';
import { connectClient } from '../database.js';

/** Describes the source tables (throws the capture's own ImagoError for one that cannot be captured). */
export async function checkSourceTables(oldDatabase: string, tables: string[]): Promise<SourceTable[]> {
  const client = await connectClient(oldDatabase, 'old');
  try {
    await client.query('BEGIN READ ONLY');
    return await describeSourceTables(client, tables);
  } finally {
    await client.end().catch(() => {});
  }
}
