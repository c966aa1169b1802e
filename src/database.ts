/**
 * Connections Imago opens to the databases it works on: errors of an idle connection never crash the
 * process (the next query reports them), and a failed connect names the database, with the password
 * redacted, and says what to check.
 */
import pg from 'pg';
import { ImagoError, errorMessage } from './errors.js';
import { redactUrl } from './redact.js';

export async function connectClient(url: string, which: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw new ImagoError(
      `cannot connect to the ${which} database: ${errorMessage(err)}`,
      redactUrl(url),
      'check the connection string and that the server is running',
    );
  }
  return client;
}
