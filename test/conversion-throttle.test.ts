// Opportunistic conversion and disk safety against real clusters: the bulk copy waits while a signal
// says the old universe is busy and resumes when it clears; the built-in signals read real state; WAL
// held by the slot past the limit pauses the upgrade with an error that says what to do.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Cluster } from '../src/universe/cluster.js';
import { startClusterPair, type ClusterPair } from './fixtures/cluster-pair.js';
import { Converter } from '../src/conversion/converter.js';
import { defineConversion, identity } from '../src/conversion/api.js';
import {
  Throttler,
  activeSessionsSignal,
  commandSignal,
  type ThrottleState,
} from '../src/conversion/throttler.js';
import { ImagoError } from '../src/errors.js';
import { waitUntil } from '../src/deadline.js';
import { findCapture } from '../src/capture/orphans.js';

let pair: ClusterPair;
let oldCluster: Cluster;
let newCluster: Cluster;
let oldDb: pg.Client;
let newDb: pg.Client;
const conversion = defineConversion({ tables: { big: identity() } });

describe('throttling and WAL safety', () => {
  before(async () => {
    pair = await startClusterPair('thr');
    ({ old: oldCluster, new: newCluster, oldDb, newDb } = pair);
    const ddl = 'CREATE TABLE big (id int PRIMARY KEY, pad text)';
    await oldDb.query(`${ddl}; INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g`);
    await newDb.query(ddl);
  });

  after(() => pair?.stop());

  test('the copy waits while a signal says busy, then completes', async () => {
    // The user's check says busy for its first three answers: like a load peak that passes.
    let answers = 0;
    const changes: ThrottleState[] = [];
    const throttler = new Throttler([async () => (answers++ < 3 ? 'peak hour' : undefined)], {
      intervalMs: 20,
      onChange: (s) => changes.push(s),
    });
    const converter = new Converter({
      sourceUrl: oldCluster.url,
      targetUrl: newCluster.url,
      conversion,
      name: 'thr',
      throttle: throttler,
    });
    try {
      await converter.prepare();
      const copied = await converter.copy();
      assert.equal(copied.rows, 20000);
    } finally {
      await converter.stop({ dropCapture: true });
    }
    assert.deepEqual(
      changes.map((c) => [c.throttled, c.reason]),
      [
        [true, 'peak hour'],
        [false, undefined],
      ],
    );
    assert.ok(throttler.status().waitedMs >= 40, `waited ${throttler.status().waitedMs} ms`);
    assert.deepEqual((await newDb.query('SELECT count(*)::int AS n FROM big')).rows, [{ n: 20000 }]);
  });

  test('built-in signals: active sessions on the old database, and a command', async () => {
    const busy = activeSessionsSignal(oldCluster.url, 0);
    assert.equal(await busy(), undefined, 'nothing running');
    const sleeper = new pg.Client(oldCluster.url);
    await sleeper.connect();
    const sleeping = sleeper.query('SELECT pg_sleep(30)').catch(() => {});
    try {
      const reason = await waitUntil(
        'the sleeping query showing as active',
        async () => (await busy()) ?? undefined,
        { timeoutMs: 10_000 },
      );
      assert.match(reason, /1 active sessions on the old database > 0/);
    } finally {
      await oldDb.query(
        `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'`,
      );
      await sleeping;
      await sleeper.end();
    }
    assert.equal(await commandSignal('exit 0')(), undefined);
    assert.match((await commandSignal('echo replica lagging; exit 1')()) ?? '', /replica lagging/);
  });

  test('WAL held by the slot past the limit pauses the upgrade with a clear error, after a warning', async () => {
    const warnings: string[] = [];
    const converter = new Converter({
      sourceUrl: oldCluster.url,
      targetUrl: newCluster.url,
      conversion,
      name: 'walcap',
      wal: { warnBytes: 1, limitBytes: 8 * 1024 * 1024, intervalMs: 50 },
      onWarning: (w) => warnings.push(w),
    });
    try {
      await converter.prepare();
      // Changes the stream has not consumed yet: the slot must keep their WAL.
      await oldDb.query(`UPDATE big SET pad = repeat('y', 500)`);
      await oldDb.query(`UPDATE big SET pad = repeat('z', 500)`);
      const failed = await waitUntil(
        'the WAL limit stopping the conversion',
        async () => converter.failed(),
        {
          timeoutMs: 20_000,
          intervalMs: 50,
        },
      );
      assert.ok(failed instanceof ImagoError);
      assert.match(
        failed.message,
        /holds .* of WAL on the old database, over the limit of 8\.0 MB; the upgrade is paused/,
      );
      assert.match(failed.hint ?? '', /abort/);
      assert.ok(
        warnings.some((w) => /holds .* of WAL/.test(w)),
        warnings.join('\n'),
      );
      await assert.rejects(converter.copy(), /over the limit/);
      // What `imago status` reports: the paused upgrade's capture, idle, with the WAL it holds.
      const [leftover] = (await findCapture(oldDb)).filter((c) => c.name === 'walcap');
      assert.equal(leftover?.slot, 'walcap_slot');
      assert.equal(leftover?.active, false);
      assert.ok((leftover?.retainedWalBytes ?? 0) >= 8 * 1024 * 1024);
    } finally {
      await converter.stop({ dropCapture: true });
    }
    assert.deepEqual(
      (await findCapture(oldDb)).filter((c) => c.name === 'walcap'),
      [],
      'dropped with the upgrade',
    );
  });
});
