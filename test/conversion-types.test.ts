// Fidelity and capture edge cases against real clusters: every built-in type round-trips exactly
// through both the copy and the stream; unchanged TOAST values are never overwritten; tables without a
// replica identity are refused with the statement to run, and consenting to FULL identity works.
import { after, before, describe, test } from 'node:test';
import { withDeadline } from '../src/deadline.js';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Cluster } from '../src/universe/cluster.js';
import { startClusterPair, streamingUntilFailure, type ClusterPair } from './fixtures/cluster-pair.js';
import { Converter } from '../src/conversion/converter.js';
import { defineConversion, identity, type TargetRow } from '../src/conversion/api.js';
import { ImagoError } from '../src/errors.js';

let pair: ClusterPair;
let oldCluster: Cluster;
let newCluster: Cluster;
let oldDb: pg.Client;
let newDb: pg.Client;

const TYPES_DDL = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE TABLE typed (
    id int8 PRIMARY KEY, n numeric, ts timestamptz, d date, t time, b bytea, j json, jb jsonb,
    ia int[], ta text[], m mood, u uuid, txt text, f8 float8, f4 float4, bool boolean, iv interval,
    inet_ inet, ts_naive timestamp
  );
  CREATE TABLE flat (id int8 PRIMARY KEY, n numeric, ts timestamptz, d date, b bytea, jb jsonb, m mood, u uuid,
    txt text, f8 float8, iv interval, inet_ inet);`;

const ROWS = `
  INSERT INTO typed VALUES
  (9223372036854775807, 123456789012345678901234567890.000000000001, '2026-11-23 10:11:12.345678+00', '0001-01-01',
   '23:59:59.999999', '\\x00ff10', '{"a": [1, 2.50, "x"]}', '{"k": 1.000000000000000000001}', '{1,NULL,3}',
   '{"a b","c,d","\\"q\\"",NULL}', 'happy', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   E'Tab\\there\\nNew line \\\\ backslash — Grüße 東京 🎉', 1.7976931348623157e308, 3.4028235e38, true,
   '1 year 2 mons 3 days 04:05:06.789', '2001:db8::1/64', '2026-01-01 00:00:00.000001'),
  (-9223372036854775808, 'NaN', 'infinity', '-infinity', '00:00', '\\x', 'null', '[]', '{}', '{}', 'sad',
   '00000000-0000-0000-0000-000000000000', '', '-0', 'NaN', false, '0', '127.0.0.1', '-infinity'),
  (0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
  -- Without array columns and in numbers, rows take the typed unnest() path of the writer.
  INSERT INTO flat SELECT typed.id % 1000 * 100 + g, n, ts, d, b, jb, m, u, txt, f8, iv, inet_
    FROM typed CROSS JOIN generate_series(1, 30) g;`;

const ALL_AS_TEXT = `SELECT id::text, n::text, ts::text, d::text, t::text, b::text, j::text, jb::text, ia::text, ta::text,
  m::text, u::text, txt, f8::text, f4::text, bool::text, iv::text, inet_::text, ts_naive::text FROM typed
  UNION ALL SELECT id::text, n::text, ts::text, d::text, NULL, b::text, NULL, jb::text, NULL, NULL, m::text, u::text, txt,
  f8::text, NULL, NULL, iv::text, inet_::text, NULL FROM flat ORDER BY 1`;

async function textRows(client: pg.Client, sql: string): Promise<unknown[]> {
  return (await client.query(sql)).rows;
}

async function convert(
  conversion: ReturnType<typeof defineConversion>,
  name: string,
  work: (c: Converter) => Promise<void>,
  extra: { replicaIdentityFull?: string[] } = {},
) {
  const converter = new Converter({
    sourceUrl: oldCluster.url,
    targetUrl: newCluster.url,
    conversion,
    name,
    ...extra,
  });
  const errors: unknown[] = [];
  try {
    await converter.prepare();
    await converter.copy();
    await converter.startStreaming((err) => errors.push(err));
    await work(converter);
    assert.deepEqual(errors, []);
  } finally {
    await converter.stop({ dropCapture: true });
  }
}

describe('conversion fidelity', () => {
  before(async () => {
    pair = await startClusterPair('types');
    ({ old: oldCluster, new: newCluster, oldDb, newDb } = pair);
    await oldDb.query(TYPES_DDL);
    await newDb.query(TYPES_DDL);
  });

  after(() => pair?.stop());

  test('every built-in type round-trips losslessly through the copy and the stream', async () => {
    await oldDb.query(ROWS);
    await convert(
      defineConversion({ tables: { typed: identity(), flat: identity() } }),
      'types',
      async (converter) => {
        assert.deepEqual(
          await textRows(newDb, ALL_AS_TEXT),
          await textRows(oldDb, ALL_AS_TEXT),
          'after the copy',
        );
        // The same rows again, this time through the change stream.
        await oldDb.query('DELETE FROM typed; DELETE FROM flat');
        await converter.catchUp(10_000);
        assert.deepEqual(
          await textRows(
            newDb,
            'SELECT (SELECT count(*) FROM typed)::int + (SELECT count(*) FROM flat)::int AS n',
          ),
          [{ n: 0 }],
        );
        await oldDb.query(ROWS);
        await oldDb.query(`UPDATE typed SET txt = txt || ' ✓', n = n * 2 WHERE id = 0 OR id > 0`);
        await oldDb.query(`UPDATE flat SET txt = txt || ' ✓', n = n * 2 WHERE id % 2 = 0`);
        await converter.catchUp(10_000);
        assert.deepEqual(
          await textRows(newDb, ALL_AS_TEXT),
          await textRows(oldDb, ALL_AS_TEXT),
          'after the stream',
        );
      },
    );
  });

  test('an update that leaves a TOASTed value unchanged does not overwrite it in the target', async () => {
    await oldDb.query(`CREATE TABLE doc (id int PRIMARY KEY, title text, body text);
      ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;`);
    await newDb.query('CREATE TABLE doc (id int PRIMARY KEY, title text, body text)');
    // Random text does not compress, so it is stored out of line (TOAST) and not resent when unchanged.
    await oldDb.query(
      `INSERT INTO doc SELECT 1, 'first', string_agg(md5(g::text), '') FROM generate_series(1, 2000) g`,
    );
    await convert(defineConversion({ tables: { doc: identity() } }), 'toast', async (converter) => {
      await oldDb.query(`UPDATE doc SET title = 'renamed' WHERE id = 1`);
      await oldDb.query(
        `BEGIN; UPDATE doc SET title = 'twice' WHERE id = 1; UPDATE doc SET title = 'thrice' WHERE id = 1; COMMIT`,
      );
      await converter.catchUp(10_000);
      const sql = 'SELECT id, title, length(body) AS len, md5(body) AS sum FROM doc';
      const [row] = (await newDb.query(sql)).rows;
      assert.equal(row.title, 'thrice');
      assert.equal(row.len, 64_000);
      assert.deepEqual(await textRows(newDb, sql), await textRows(oldDb, sql));
    });
  });

  test('a transform over a TOASTed column works with REPLICA IDENTITY FULL, and stops clearly without it', async () => {
    await oldDb.query(`CREATE TABLE note (id int PRIMARY KEY, title text, body text);
      ALTER TABLE note ALTER COLUMN body SET STORAGE EXTERNAL;
      INSERT INTO note SELECT 1, 'a', string_agg(md5(g::text), '') FROM generate_series(1, 500) g;`);
    await newDb.query('CREATE TABLE note2 (id int PRIMARY KEY, title text, body_len int)');
    const conversion = defineConversion({
      tables: {
        note: {
          transform: (row): TargetRow[] => [
            {
              table: 'note2',
              row: { id: row.id ?? null, title: row.title ?? null, body_len: (row.body ?? '').length },
            },
          ],
        },
      },
    });
    // Without FULL identity the stream cannot see the unchanged body: the error says what to run.
    const { converter, failure } = await streamingUntilFailure(pair, { conversion, name: 'toast_t' });
    try {
      await oldDb.query(`UPDATE note SET title = 'b' WHERE id = 1`);
      const err = await withDeadline('the stream stopping', failure, 30_000);
      assert.ok(err instanceof ImagoError);
      assert.match(err.hint ?? '', /ALTER TABLE "public"\."note" REPLICA IDENTITY FULL/);
    } finally {
      await converter.stop({ dropCapture: true });
    }
    await oldDb.query('ALTER TABLE note REPLICA IDENTITY FULL');
    await newDb.query('TRUNCATE note2; DROP SCHEMA imago CASCADE');
    await convert(conversion, 'toast_full', async (c) => {
      await oldDb.query(`UPDATE note SET title = 'c' WHERE id = 1`);
      await c.catchUp(10_000);
      assert.deepEqual(await textRows(newDb, 'SELECT id, title, body_len FROM note2'), [
        { id: 1, title: 'c', body_len: 16_000 },
      ]);
    });
  });

  test('a value longer than a varchar(n) target stops the stream, never cut short, however many rows', async () => {
    await oldDb.query(
      `CREATE TABLE handle (id int8 PRIMARY KEY, h text); INSERT INTO handle VALUES (1, 'ab')`,
    );
    await newDb.query('CREATE TABLE handle (id int8 PRIMARY KEY, h varchar(5))');
    const { converter, failure } = await streamingUntilFailure(pair, {
      conversion: defineConversion({ tables: { handle: identity() } }),
      name: 'narrow_varchar',
    });
    try {
      // Enough rows in one transaction for the writer's typed unnest() path (16 and more).
      await oldDb.query(
        `INSERT INTO handle SELECT g, CASE WHEN g = 20 THEN 'far too long' ELSE 'ok' END FROM generate_series(2, 40) g`,
      );
      const err = await withDeadline('the stream to stop at the long value', failure, 20_000);
      assert.ok(err instanceof Error, String(err));
      assert.match(err.message, /value too long for type character varying\(5\)/);
      assert.match(err.message, /produced by handle row \["20"\]/, 'the source row named');
      assert.deepEqual(await textRows(newDb, `SELECT id, h FROM handle WHERE id = 20`), []);
    } finally {
      await converter.stop({ dropCapture: true });
    }
  });

  test('a table without a primary key is refused with the statement to run; the old app keeps writing', async () => {
    await oldDb.query(`CREATE TABLE loose (a int, b text); INSERT INTO loose VALUES (1, 'x')`);
    await newDb.query('CREATE TABLE loose (a int PRIMARY KEY, b text)');
    const converter = new Converter({
      sourceUrl: oldCluster.url,
      targetUrl: newCluster.url,
      conversion: defineConversion({ tables: { loose: identity() } }),
      name: 'nopk',
    });
    await assert.rejects(converter.prepare(), (err: unknown) => {
      assert.ok(err instanceof ImagoError);
      assert.match(err.message, /public\.loose has no primary key or replica identity/);
      assert.match(err.hint ?? '', /ALTER TABLE "public"\."loose" REPLICA IDENTITY FULL/);
      return true;
    });
    await converter.stop({ dropCapture: true });
    // Nothing was published: the old application's updates still work.
    await oldDb.query(`UPDATE loose SET b = 'y' WHERE a = 1`);
    assert.deepEqual(await textRows(oldDb, 'SELECT pubname FROM pg_publication'), []);

    // With the plan's consent to FULL identity, the same table converts, updates included.
    await convert(
      defineConversion({ tables: { loose: identity() } }),
      'nopk_full',
      async (c) => {
        await oldDb.query(`UPDATE loose SET b = 'z' WHERE a = 1`);
        await c.catchUp(10_000);
        assert.deepEqual(await textRows(newDb, 'SELECT a, b FROM loose'), [{ a: 1, b: 'z' }]);
      },
      { replicaIdentityFull: ['loose'] },
    );
  });

  test("a partitioned source table: copied, and its partitions' changes streamed under its own name", async () => {
    await oldDb.query(`CREATE TABLE reading (id int, at date, v numeric, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
      CREATE TABLE reading_2025 PARTITION OF reading FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE reading_2026 PARTITION OF reading FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      INSERT INTO reading VALUES (1, '2025-06-01', 1.5), (2, '2026-06-01', 2.5);`);
    await newDb.query('CREATE TABLE reading (id int, at date, v numeric, PRIMARY KEY (id, at))');
    await convert(defineConversion({ tables: { reading: identity() } }), 'parts', async (c) => {
      await oldDb.query(`INSERT INTO reading VALUES (3, '2025-07-01', 3.5), (4, '2026-07-01', 4.5);
        UPDATE reading SET v = 9 WHERE id = 1; DELETE FROM reading WHERE id = 2;`);
      await c.catchUp(10_000);
      const sql = 'SELECT id, at::text, v::text FROM reading ORDER BY id';
      assert.deepEqual(await textRows(newDb, sql), await textRows(oldDb, sql));
      assert.equal((await textRows(newDb, sql)).length, 3);
    });
  });
});
