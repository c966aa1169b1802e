// A quiet stream must survive the server's wal_sender_timeout (keepalives answered from the start),
// and its slot must advance while only unpublished tables are written (so it does not pin WAL).
// A read fence covers what was committed before it, idle or under writes, and under writes it needs
// no marker of its own.
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

test('a read fence covers every earlier commit; under writes it passes without writing a marker', async () => {
  const converter = new Converter({
    sourceUrl: oldCluster.url,
    targetUrl: newCluster.url,
    conversion: defineConversion({ tables: { published: identity() } }),
    name: 'fence',
  });
  await oldDb.query('TRUNCATE published');
  const writer = new pg.Client({ connectionString: oldCluster.url });
  await writer.connect();
  let writing = true;
  let next = 1_000;
  const writes = (async () => {
    while (writing) await writer.query('INSERT INTO published VALUES ($1)', [next++]);
  })();
  try {
    await converter.prepare();
    await converter.copy();
    await converter.startStreaming(() => {});
    const kinds: string[] = [];
    for (let i = 1; i <= 10; i++) {
      await oldDb.query('INSERT INTO published VALUES ($1)', [i]);
      // A generous marker delay: under writes another transaction passes the position long before.
      kinds.push(await converter.readFence(10_000, 5_000));
      const { rows } = await newDb.query('SELECT 1 FROM published WHERE id = $1', [i]);
      assert.equal(rows.length, 1, `row ${i}, committed before fence ${i}, is applied when it passes`);
    }
    assert.deepEqual(kinds, Array(10).fill('passed'));
    writing = false;
    await writes;
    // Idle: whichever way it passes (a marker, or the last write already past the position), it covers.
    await oldDb.query('INSERT INTO published VALUES (11)');
    await converter.readFence(10_000, 50);
    assert.equal((await newDb.query('SELECT 1 FROM published WHERE id = 11')).rows.length, 1);
  } finally {
    writing = false;
    await writes.catch(() => {});
    await writer.end();
    await converter.stop({ dropCapture: true });
  }
});
