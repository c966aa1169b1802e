// Crash safety: the conversion process is killed with SIGKILL at random moments during the copy and
// during streaming — at least ten times — while the old database keeps taking writes. Each time it is
// started again and resumes. In the end the new database must equal the transform applied to the old
// one, row for row: nothing lost, nothing applied twice, nothing left over.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Cluster } from '../src/universe/cluster.js';
import { startClusterPair, type ClusterPair } from './fixtures/cluster-pair.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { parseLsn } from '../src/capture/lsn.js';
import { convertAccount } from './fixtures/bank-conversion.js';

const conversionModule = fileURLToPath(new URL('./fixtures/bank-conversion.ts', import.meta.url));
let pair: ClusterPair;
let oldCluster: Cluster;
let newCluster: Cluster;
let oldDb: pg.Client;
let newDb: pg.Client;

before(async () => {
  pair = await startClusterPair('crash');
  ({ old: oldCluster, new: newCluster, oldDb, newDb } = pair);
  await oldDb.query(`
    CREATE TABLE account (id int PRIMARY KEY, owner text NOT NULL, balance numeric(20, 2), tags text NOT NULL DEFAULT '');
    CREATE TABLE entry (id bigserial PRIMARY KEY, account_id int NOT NULL, amount numeric(20, 2) NOT NULL, note text);
    INSERT INTO account SELECT g, 'owner ' || g, g * 1.25, CASE WHEN g % 3 = 0 THEN 'gold,early' ELSE 'basic' END
      FROM generate_series(1, 30000) g;
    INSERT INTO entry (account_id, amount, note) SELECT g % 30000 + 1, g * 0.01, 'seed ' || g FROM generate_series(1, 60000) g;`);
  await newDb.query(`
    CREATE TABLE acct (id int PRIMARY KEY, owner_upper text NOT NULL, balance_cents bigint);
    CREATE TABLE acct_tag (acct_id int, n int, tag text NOT NULL, PRIMARY KEY (acct_id, n));
    CREATE TABLE entry (id bigint PRIMARY KEY, account_id int NOT NULL, amount numeric(20, 2) NOT NULL, note text);`);
});

after(() => pair?.stop());

/** Random transactions on the old database until stopped: inserts, updates (incl. tags), deletes, key changes. */
function startWriter(url: string) {
  const client = new pg.Client(url);
  let running = true;
  let next = 1_000_000;
  let count = 0;
  const done = (async () => {
    await client.connect();
    while (running) {
      const id = 1 + Math.floor(Math.random() * 30000);
      const r = Math.random();
      await client.query('BEGIN');
      if (r < 0.3) {
        await client.query(`INSERT INTO entry (account_id, amount, note) VALUES ($1, 1.5, 'live')`, [id]);
        await client.query('UPDATE account SET balance = balance + 1.5 WHERE id = $1', [id]);
      } else if (r < 0.5) {
        await client.query(
          `UPDATE account SET tags = CASE WHEN tags = 'basic' THEN 'vip,gold,x' ELSE 'basic' END WHERE id = $1`,
          [id],
        );
      } else if (r < 0.6) {
        await client.query('DELETE FROM account WHERE id = $1', [id]);
      } else if (r < 0.7) {
        await client.query(`INSERT INTO account VALUES ($1, 'new', 0, 'fresh') ON CONFLICT (id) DO NOTHING`, [
          next++,
        ]);
      } else if (r < 0.8) {
        await client.query('UPDATE account SET id = $2 WHERE id = $1', [id, next++]);
      } else {
        await client.query(`UPDATE entry SET note = 'edited' WHERE id = (SELECT max(id) FROM entry)`);
        await client.query(`DELETE FROM entry WHERE id = (SELECT min(id) FROM entry)`);
      }
      await client.query('COMMIT');
      count++;
    }
    await client.end();
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return count;
    },
  };
}

function startConverter(): {
  child: ChildProcess;
  phase: (name: string) => Promise<void>;
  exited: Promise<void>;
} {
  const child = spawn(
    process.execPath,
    [
      'bin/imago.js',
      'convert',
      '--json',
      '--old-url',
      oldCluster.url,
      '--new-url',
      newCluster.url,
      '--conversion',
      conversionModule,
      '--name',
      'crash',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const seen = new Set<string>();
  const waiters = new Map<string, () => void>();
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const event = (JSON.parse(line) as { event?: string }).event ?? '';
    seen.add(event);
    waiters.get(event)?.();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const phase = (name: string) =>
    withDeadline(
      `conversion process reaching "${name}"`,
      new Promise<void>((resolve, reject) => {
        if (seen.has(name)) return resolve();
        waiters.set(name, resolve);
        void exited.then(() => reject(new Error(`conversion process exited before "${name}": ${stderr}`)));
      }),
      60_000,
    );
  return { child, phase, exited };
}

async function expectedRows(): Promise<{ acct: unknown[]; tags: unknown[]; entry: unknown[] }> {
  const accounts = (
    await oldDb.query({
      text: 'SELECT id::text, owner, balance::text, tags FROM account',
      types: { getTypeParser: () => (v: string) => v } as never,
    })
  ).rows;
  const outputs = accounts.flatMap((a) => convertAccount(a));
  const acct = outputs
    .filter((o) => o.table === 'acct')
    .map((o) => ({
      id: Number(o.row.id),
      owner_upper: o.row.owner_upper,
      balance_cents: o.row.balance_cents,
    }));
  const tags = outputs
    .filter((o) => o.table === 'acct_tag')
    .map((o) => ({ acct_id: Number(o.row.acct_id), n: Number(o.row.n), tag: o.row.tag }));
  const entry = (await oldDb.query('SELECT id::text, account_id, amount::text, note FROM entry ORDER BY id'))
    .rows;
  return {
    acct: acct.sort((a, b) => a.id - b.id),
    tags: tags.sort((a, b) => a.acct_id - b.acct_id || a.n - b.n),
    entry,
  };
}

test('kill -9 during copy and streaming, ten times and more, under writes: resumes to an exact conversion', async () => {
  const writer = startWriter(oldCluster.url);
  let kills = 0;
  try {
    // Two kills during the bulk copy (it then starts over), then streaming kills at random moments.
    for (const when of ['copy', 'copy', ...Array<string>(9).fill('streaming')]) {
      const { child, phase, exited } = startConverter();
      await phase(when);
      // The fault injection schedule: a random moment within the phase, not a synchronisation.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * (when === 'copy' ? 300 : 700)));
      child.kill('SIGKILL');
      await withDeadline('killed conversion process exiting', exited, 10_000);
      kills++;
    }
  } finally {
    const writes = await writer.stop();
    assert.ok(writes > 100, `the old database took only ${writes} writes`);
  }
  assert.ok(kills >= 10);

  // A last run that is allowed to catch up to a marker written after the writes stopped.
  const { child, phase, exited } = startConverter();
  try {
    await phase('streaming');
    const { rows } = await oldDb.query<{ lsn: string }>(
      `SELECT pg_logical_emit_message(true, 'test', 'end')::text AS lsn`,
    );
    const end = parseLsn(rows[0]?.lsn ?? '0/0');
    await waitUntil(
      'conversion applying everything the old database committed',
      async () => {
        const cp = await newDb.query<{ lsn: string }>(
          `SELECT commit_lsn::text AS lsn FROM imago.checkpoint WHERE stream = 'crash'`,
        );
        return cp.rows[0] && parseLsn(cp.rows[0].lsn) > end ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  } finally {
    child.kill('SIGTERM');
    await withDeadline('conversion process stopping', exited, 15_000);
  }

  const expected = await expectedRows();
  const acct = (await newDb.query('SELECT id, owner_upper, balance_cents::text FROM acct ORDER BY id')).rows;
  assert.equal(acct.length, expected.acct.length);
  assert.deepEqual(acct, expected.acct);
  const tags = (await newDb.query('SELECT acct_id, n, tag FROM acct_tag ORDER BY acct_id, n')).rows;
  assert.deepEqual(tags, expected.tags);
  const entry = (await newDb.query('SELECT id::text, account_id, amount::text, note FROM entry ORDER BY id'))
    .rows;
  assert.equal(entry.length, expected.entry.length);
  assert.deepEqual(entry, expected.entry);
  await oldDb.query(`SELECT pg_drop_replication_slot('crash_slot'); DROP PUBLICATION crash_pub`);
});
