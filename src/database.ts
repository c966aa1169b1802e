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

/**
 * Opens connections side by side (each connect is a few round trips and, with SCRAM, a key
 * derivation at both ends): all of them, or none left open and the first failure (in argument
 * order) thrown.
 */
export async function connectClients<T extends [url: string, which: string][]>(
  ...targets: T
): Promise<{ [K in keyof T]: pg.Client }> {
  const results = await Promise.allSettled(targets.map(([url, which]) => connectClient(url, which)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(
      results.map((r) => (r.status === 'fulfilled' ? r.value.end().catch(() => {}) : undefined)),
    );
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<pg.Client>).value) as { [K in keyof T]: pg.Client };
}
