// A quiet stream must survive the server's wal_sender_timeout (keepalives answered from the start),
// and its slot must advance while only unpublished tables are written (so it does not pin WAL).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Cluster } from '../src/universe/cluster.js';
import { startClusterPair, type ClusterPair } from './fixtures/cluster-pair.js';
import { Converter } from '../src/conversion/converter.js';
import { defineConversion, identity } from '../src/conversion/api.js';
import { parseLsn } from '../src/capture/lsn.js';
import { waitUntil } from '../src/deadline.js';

let pair: ClusterPair;
let oldCluster: Cluster;
let newCluster: Cluster;
let oldDb: pg.Client;
let newDb: pg.Client;

before(async () => {
  pair = await startClusterPair('idle', { wal_sender_timeout: '1s' });
  ({ old: oldCluster, new: newCluster, oldDb, newDb } = pair);
  await oldDb.query(
    'CREATE TABLE published (id int PRIMARY KEY); CREATE TABLE other (id serial PRIMARY KEY, pad text)',
  );
  await newDb.query('CREATE TABLE published (id int PRIMARY KEY)');
});

after(() => pair?.stop());

test('an idle stream outlives wal_sender_timeout and its slot follows WAL written elsewhere', async () => {
  const converter = new Converter({
    sourceUrl: oldCluster.url,
    targetUrl: newCluster.url,
    conversion: defineConversion({ tables: { published: identity() } }),
    name: 'idle',
  });
  const errors: unknown[] = [];
  try {
    await converter.prepare();
    await converter.copy();
    await converter.startStreaming((err) => errors.push(err));
    // Only the unpublished table is written, for three timeouts' worth of time.
    const end = Date.now() + 3000;
    while (Date.now() < end)
      await oldDb.query(`INSERT INTO other (pad) SELECT repeat('x', 200) FROM generate_series(1, 200)`);
    const { rows } = await oldDb.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const written = parseLsn(rows[0]?.lsn ?? '0/0');
    await waitUntil(
      'the slot confirming WAL written to unpublished tables',
      async () => {
        const slot = await oldDb.query<{ lsn: string }>(
          `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'idle_slot'`,
        );
        return parseLsn(slot.rows[0]?.lsn ?? '0/0') >= written ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    await oldDb.query('INSERT INTO published VALUES (1)');
    await converter.catchUp(10_000);
    assert.deepEqual((await newDb.query('SELECT id FROM published')).rows, [{ id: 1 }]);
    assert.deepEqual(errors, [], 'the stream was never dropped');
  } finally {
    await converter.stop({ dropCapture: true });
  }
});
