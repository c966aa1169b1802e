// The conversion pipeline against two real clusters: snapshot copy, streamed changes (insert, update,
// delete, key change, truncate), 1:N transforms with lineage, lookups, fence catch-up and a failing transform.
import { after, before, describe, test } from 'node:test';
import { withDeadline } from '../src/deadline.js';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Cluster } from '../src/universe/cluster.js';
import { startClusterPair, streamingUntilFailure, type ClusterPair } from './fixtures/cluster-pair.js';
import { Converter } from '../src/conversion/converter.js';
import type { CopyProgress } from '../src/conversion/copier.js';
import { defineConversion, identity, type TargetRow } from '../src/conversion/api.js';
import { TransformError } from '../src/conversion/row-converter.js';
import { analyzeTargets } from '../src/conversion/statistics.js';

let pair: ClusterPair;
let oldCluster: Cluster;
let newCluster: Cluster;
let oldDb: pg.Client;
let newDb: pg.Client;

const conversion = defineConversion({
  tables: {
    item: identity(),
    author: {
      // 1:N: an author becomes a person and one tag row per comma-separated tag.
      transform(row): TargetRow[] {
        const tags = (row.tags ?? '').split(',').filter(Boolean);
        if (row.name === 'boom') throw new Error('cannot convert boom');
        return [
          {
            table: 'person',
            row: { id: row.id ?? null, full_name: `${row.name} (${row.id})`, born: row.born ?? null },
          },
          ...tags.map((tag, i) => ({ table: 'person_tag', row: { person_id: row.id ?? null, n: i, tag } })),
        ];
      },
    },
    book: {
      // N:1: a book finds its person by name through a lookup.
      async transform(row, { lookup }): Promise<TargetRow[]> {
        const person = await lookup('person', { full_name: `${row.author_name} (${row.author_id})` });
        if (!person) throw new Error(`no person for ${row.author_name}`);
        return [
          {
            table: 'book2',
            row: { id: row.id ?? null, person_id: person.id ?? null, title: row.title ?? null },
          },
        ];
      },
    },
  },
});

async function rows(client: pg.Client, sql: string): Promise<unknown[]> {
  return (await client.query(sql)).rows;
}

describe('conversion', () => {
  before(async () => {
    pair = await startClusterPair('conv');
    ({ old: oldCluster, new: newCluster, oldDb, newDb } = pair);
    await oldDb.query(`
      CREATE TABLE item (id bigint PRIMARY KEY, price numeric, at timestamptz, data jsonb, tags text[], big int8);
      CREATE TABLE author (id int PRIMARY KEY, name text NOT NULL, born date, tags text NOT NULL DEFAULT '');
      CREATE TABLE book (id int PRIMARY KEY, author_id int NOT NULL, author_name text NOT NULL, title text);
      INSERT INTO item SELECT g, g * 1.5, '2026-01-01 00:00:00.123456+00'::timestamptz + g * interval '1 microsecond',
        jsonb_build_object('g', g), ARRAY['a', 'b'], 9007199254740993 + g FROM generate_series(1, 500) g;
      INSERT INTO author VALUES (1, 'Ada', '1815-12-10', 'math,poetry'), (2, 'Alan', '1912-06-23', 'math');
      INSERT INTO book VALUES (1, 1, 'Ada', 'Notes'), (2, 2, 'Alan', 'Computable Numbers');
      ANALYZE item, author, book;`);
    await newDb.query(`
      CREATE TABLE item (id bigint PRIMARY KEY, price numeric, at timestamptz, data jsonb, tags text[], big int8);
      CREATE TABLE person (id int PRIMARY KEY, full_name text NOT NULL UNIQUE, born date);
      CREATE TABLE person_tag (person_id int, n int, tag text NOT NULL, PRIMARY KEY (person_id, n));
      CREATE TABLE book2 (id int PRIMARY KEY, person_id int NOT NULL, title text);`);
  });

  after(() => pair?.stop());

  test('copies the snapshot, streams every kind of change and catches up to a fence', async () => {
    const converter = new Converter({
      sourceUrl: oldCluster.url,
      targetUrl: newCluster.url,
      conversion,
      name: 'conv_test',
      parallel: 3,
    });
    const errors: unknown[] = [];
    try {
      await converter.prepare();
      // Committed after the slot exists: must arrive through the stream, not the copy.
      await oldDb.query(`INSERT INTO item VALUES (501, 1, now(), '{}', '{}', 1)`);
      const progress: CopyProgress[] = [];
      const copied = await converter.copy((p) => progress.push(p));
      assert.equal(copied.rows, 500 + 2 + 2);
      const last = progress.at(-1);
      assert.equal(last?.copiedRows, 504);
      assert.ok((last?.estimatedRows ?? 0) > 0, 'an estimate of the total for the ETA');
      await converter.startStreaming((err) => errors.push(err));
      // Planner statistics for every table the copy filled, gathered beside the stream.
      await withDeadline('the targets analyzed', converter.statisticsReady(), 30_000);
      // (By Imago, or by autovacuum had it come first.)
      assert.deepEqual(
        await rows(
          newDb,
          `SELECT relname FROM pg_stat_user_tables
            WHERE schemaname = 'public' AND coalesce(last_analyze, last_autoanalyze) IS NOT NULL ORDER BY 1`,
        ),
        ['book2', 'item', 'person', 'person_tag'].map((relname) => ({ relname })),
      );
      assert.deepEqual(
        await rows(newDb, `SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'public' ORDER BY 1`),
        ['book2', 'item', 'person', 'person_tag'].map((tablename) => ({ tablename })),
      );
      assert.deepEqual(
        await analyzeTargets(newCluster.url, 2),
        { analyzed: [], missing: [], failed: [] },
        'tables analyzed once are not analyzed again',
      );
      // A table whose lock cannot be had is reported after the lock timeout, and the others go on.
      await newDb.query(
        `SELECT pg_stat_reset_single_table_counters(t::regclass) FROM unnest('{item,person}'::text[]) t`,
      );
      const holder = new pg.Client(newCluster.url);
      await holder.connect();
      try {
        await holder.query('BEGIN; LOCK TABLE person IN ACCESS EXCLUSIVE MODE');
        const result = await withDeadline(
          'analyze beside a locked table',
          analyzeTargets(newCluster.url, 1),
          30_000,
        );
        // Names as quoted in SQL (src/sql.ts: always with the schema).
        assert.deepEqual([result.analyzed, result.missing], [['"public"."item"'], ['"public"."person"']]);
        assert.deepEqual(
          result.failed.map((f) => f.table),
          ['"public"."person"'],
        );
        assert.match(result.failed[0]?.error ?? '', /lock timeout/);
      } finally {
        await holder.end();
      }

      await oldDb.query(`
        BEGIN;
        UPDATE item SET price = 123456789012345678901234567890.123456789 WHERE id = 1;
        DELETE FROM item WHERE id = 2;
        UPDATE item SET id = 1002 WHERE id = 3;
        COMMIT;
        UPDATE author SET tags = 'math' WHERE id = 1;
        INSERT INTO author VALUES (3, 'Grace', NULL, 'navy,cobol,math');
        INSERT INTO book VALUES (3, 3, 'Grace', 'Compilers');
        DELETE FROM author WHERE id = 2;`);
      await converter.catchUp(10_000);

      const compare = async (sql: string) => assert.deepEqual(await rows(newDb, sql), await rows(oldDb, sql));
      await compare(
        'SELECT id, price::text, at::text, data::text, tags::text, big::text FROM item ORDER BY id',
      );
      assert.deepEqual(await rows(newDb, 'SELECT id, full_name, born::text FROM person ORDER BY id'), [
        { id: 1, full_name: 'Ada (1)', born: '1815-12-10' },
        { id: 3, full_name: 'Grace (3)', born: null },
      ]);
      assert.deepEqual(await rows(newDb, 'SELECT person_id, n, tag FROM person_tag ORDER BY 1, 2'), [
        { person_id: 1, n: 0, tag: 'math' },
        { person_id: 3, n: 0, tag: 'navy' },
        { person_id: 3, n: 1, tag: 'cobol' },
        { person_id: 3, n: 2, tag: 'math' },
      ]);
      assert.deepEqual(await rows(newDb, 'SELECT id, person_id, title FROM book2 ORDER BY id'), [
        { id: 1, person_id: 1, title: 'Notes' },
        { id: 2, person_id: 2, title: 'Computable Numbers' },
        { id: 3, person_id: 3, title: 'Compilers' },
      ]);

      await oldDb.query('TRUNCATE author');
      await converter.catchUp(10_000);
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM person_tag'), [{ n: 0 }]);
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM person'), [{ n: 0 }]);
      assert.deepEqual(errors, []);
    } finally {
      await converter.stop({ dropCapture: true });
    }
    const slots = await rows(oldDb, 'SELECT slot_name FROM pg_replication_slots');
    assert.deepEqual(slots, []);
  });

  test('a throwing transform stops at that row with nothing half-applied; after the fix, the conversion resumes from there', async () => {
    await newDb.query('TRUNCATE item, person, person_tag, book2; DROP SCHEMA IF EXISTS imago CASCADE');
    await oldDb.query(`INSERT INTO author VALUES (1, 'Ada'), (2, 'Alan'), (3, 'Grace')`);
    const { converter, failure } = await streamingUntilFailure(pair, { conversion, name: 'conv_fail' });
    try {
      await oldDb.query(
        `BEGIN; INSERT INTO item VALUES (9001, 1, now(), '{}', '{}', 1); INSERT INTO author VALUES (77, 'boom'); COMMIT;`,
      );
      const err = await withDeadline('the stream stopping on the throwing transform', failure, 30_000);
      assert.ok(err instanceof TransformError, String(err));
      assert.equal(err.table, 'author');
      assert.equal(err.key, '["77"]');
      // The item of the same source transaction was rolled back with it.
      assert.deepEqual(await rows(newDb, 'SELECT id FROM item WHERE id = 9001'), []);
    } finally {
      await converter.stop();
    }
    // The fix: the transform now handles that row. The same conversion name resumes from the checkpoint.
    const fixed = defineConversion({
      tables: {
        ...conversion.tables,
        author: {
          transform: (row): TargetRow[] => [
            {
              table: 'person',
              row: { id: row.id ?? null, full_name: `${row.name} (${row.id}) fixed`, born: null },
            },
          ],
        },
      },
    });
    const resumed = new Converter({
      sourceUrl: oldCluster.url,
      targetUrl: newCluster.url,
      conversion: fixed,
      name: 'conv_fail',
    });
    const errors: unknown[] = [];
    try {
      assert.equal((await resumed.prepare()).resumed, true);
      assert.equal((await resumed.copy()).rows, 0, 'no second copy');
      await resumed.startStreaming((err) => errors.push(err));
      await resumed.catchUp(10_000);
      assert.deepEqual(await rows(newDb, 'SELECT id FROM item WHERE id = 9001'), [{ id: '9001' }]);
      assert.deepEqual(await rows(newDb, 'SELECT full_name FROM person WHERE id = 77'), [
        { full_name: 'boom (77) fixed' },
      ]);
      assert.deepEqual(errors, []);
    } finally {
      await resumed.stop({ dropCapture: true });
    }
  });

  test('a group whose collapsed writes would break a unique constraint is applied again change by change', async () => {
    await oldDb.query(`CREATE TABLE usr (id int PRIMARY KEY, email text NOT NULL UNIQUE);
      INSERT INTO usr VALUES (1, 'a'), (2, 'b');
      CREATE TABLE login (id int PRIMARY KEY, email text NOT NULL UNIQUE);
      INSERT INTO login VALUES (1, 'a'), (2, 'b');`);
    await newDb.query(`CREATE TABLE contact (id int PRIMARY KEY, email text NOT NULL UNIQUE);
      CREATE TABLE login (id int PRIMARY KEY, email text NOT NULL UNIQUE);`);
    const emails = defineConversion({
      tables: {
        usr: {
          transform: (row): TargetRow[] => [
            { table: 'contact', row: { id: row.id ?? null, email: row.email ?? null } },
          ],
        },
        login: identity(),
      },
    });
    const converter = new Converter({
      sourceUrl: oldCluster.url,
      targetUrl: newCluster.url,
      conversion: emails,
      name: 'swap',
    });
    const errors: unknown[] = [];
    try {
      await converter.prepare();
      await converter.copy();
      await converter.startStreaming((err) => errors.push(err));
      // Collapsed per row, user 2 would take 'a' before user 1 gives it up: only the source's order works.
      await oldDb.query(`BEGIN;
        UPDATE usr SET email = 'z' WHERE id = 2; UPDATE usr SET email = 'y' WHERE id = 1; UPDATE usr SET email = 'a' WHERE id = 2;
        COMMIT;`);
      await converter.catchUp(10_000);
      // The same on a table copied unchanged, alone in its group (the one-round-trip script path).
      await oldDb.query(`BEGIN;
        UPDATE login SET email = 'z' WHERE id = 2; UPDATE login SET email = 'y' WHERE id = 1; UPDATE login SET email = 'a' WHERE id = 2;
        COMMIT;`);
      await converter.catchUp(10_000);
      for (const table of ['contact', 'login']) {
        assert.deepEqual(await rows(newDb, `SELECT id, email FROM ${table} ORDER BY id`), [
          { id: 1, email: 'y' },
          { id: 2, email: 'a' },
        ]);
      }
      assert.deepEqual(errors, []);
    } finally {
      await converter.stop({ dropCapture: true });
    }
  });
});
