// Lineage read from the target rows (sourceKeyIn): a 1:N transform whose outputs carry the source key
// stores no lineage, and updates, deletes, key changes, reordering conflicts and truncates still
// leave exactly what the transform makes of the source; a transform or schema that breaks the promise
// is stopped with the row, the table and the column named.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startClusterPair, streamingUntilFailure, type ClusterPair } from './fixtures/cluster-pair.js';
import { Converter, type ConverterOptions } from '../src/conversion/converter.js';
import { defineConversion, type Row, type TargetRow } from '../src/conversion/api.js';
import { TransformError } from '../src/conversion/row-converter.js';
import { canonicalKey } from '../src/conversion/keyed-lineage.js';
import { withDeadline } from '../src/deadline.js';

let pair: ClusterPair;
let oldDb: pg.Client;
let newDb: pg.Client;

/** An author becomes a person (named uniquely) and one tag row per comma-separated tag. */
const toPerson =
  (suffix: string, tagKey: (row: Row) => string | null = (row) => row.id ?? null) =>
  (row: Row): TargetRow[] => [
    { table: `person${suffix}`, row: { id: row.id ?? null, name: row.name ?? null } },
    ...(row.tags ?? '')
      .split(',')
      .filter(Boolean)
      .map((tag, n) => ({ table: `person_tag${suffix}`, row: { person_id: tagKey(row), n, tag } })),
  ];

const keyedConversion = (suffix: string, tagKey?: (row: Row) => string | null) =>
  defineConversion({
    tables: {
      [`author${suffix}`]: {
        sourceKeyIn: { [`person${suffix}`]: ['id'], [`person_tag${suffix}`]: ['person_id'] },
        transform: toPerson(suffix, tagKey),
      },
    },
  });

/** A converter from the old cluster to the new one. */
const converterFor = (options: Omit<ConverterOptions, 'sourceUrl' | 'targetUrl'>) =>
  new Converter({ sourceUrl: pair.old.url, targetUrl: pair.new.url, ...options });

async function rows(client: pg.Client, sql: string): Promise<unknown[]> {
  return (await client.query(sql)).rows;
}

/** Old and new tables for one test, `suffix` keeping them apart; `tagKey` the tag table's primary key. */
async function tables(suffix: string, tagKey = 'person_id, n'): Promise<void> {
  await oldDb.query(`CREATE TABLE author${suffix} (id int PRIMARY KEY, name text NOT NULL, tags text NOT NULL DEFAULT '');
    INSERT INTO author${suffix} VALUES (1, 'Ada', 'math,poetry'), (2, 'Alan', 'math'), (3, 'Grace', 'navy,cobol,math');`);
  await newDb.query(`CREATE TABLE person${suffix} (id int PRIMARY KEY, name text NOT NULL UNIQUE);
    CREATE TABLE person_tag${suffix} (person_id int, n int, tag text NOT NULL, PRIMARY KEY (${tagKey}));`);
}

describe('lineage read from the target rows (sourceKeyIn)', () => {
  before(async () => {
    pair = await startClusterPair('keyed');
    ({ oldDb, newDb } = pair);
  });

  after(() => pair?.stop());

  test('no lineage is stored, and every kind of change leaves exactly the transform of the source', async () => {
    await tables('');
    const converter = converterFor({
      conversion: keyedConversion(''),
      name: 'keyed',
    });
    const errors: unknown[] = [];
    // The target must hold what the transform makes of the source, row for row.
    const converted = async () => {
      const source = (await oldDb.query<Row>('SELECT id::text, name, tags FROM author ORDER BY id')).rows;
      const outputs = source.flatMap(toPerson(''));
      const of = (t: string) => outputs.filter((o) => o.table === t).map((o) => o.row);
      assert.deepEqual(await rows(newDb, 'SELECT id::text, name FROM person ORDER BY id'), of('person'));
      assert.deepEqual(
        await rows(newDb, 'SELECT person_id::text, n, tag FROM person_tag ORDER BY person_id, n'),
        of('person_tag'),
      );
    };
    try {
      await converter.prepare();
      assert.equal((await converter.copy()).targetRows, 3 + 6);
      await converted();
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM imago.lineage'), [{ n: 0 }]);
      await converter.startStreaming((err) => errors.push(err));

      // One group: fewer tags (the rows no longer produced go), a delete, a key change, an insert.
      await oldDb.query(`BEGIN;
        UPDATE author SET tags = 'math' WHERE id = 1;
        DELETE FROM author WHERE id = 2;
        UPDATE author SET id = 30 WHERE id = 3;
        INSERT INTO author VALUES (4, 'Edsger', 'goto,structured');
        COMMIT;`);
      await converter.catchUp(10_000);
      await converted();

      // Collapsed per row, 30 would take 'Ada' before 1 gives it up: applied again change by change.
      await oldDb.query(`BEGIN;
        UPDATE author SET name = 'tmp', tags = 'x,y,z' WHERE id = 1;
        UPDATE author SET name = 'Ada', tags = '' WHERE id = 30;
        UPDATE author SET name = 'Grace' WHERE id = 1;
        COMMIT;`);
      await converter.catchUp(10_000);
      await converted();
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM imago.lineage'), [{ n: 0 }]);

      await oldDb.query('TRUNCATE author');
      await converter.catchUp(10_000);
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM person'), [{ n: 0 }]);
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM person_tag'), [{ n: 0 }]);
      assert.deepEqual(errors, []);
    } finally {
      await converter.stop({ dropCapture: true });
    }
  });

  test('an output without the source key stops the copy, naming the row, the table and the column', async () => {
    await tables('_bad');
    const converter = converterFor({
      // Alan's tags are filed under the next author.
      conversion: keyedConversion('_bad', (row) => (row.name === 'Alan' ? '3' : (row.id ?? null))),
      name: 'keyed_bad',
    });
    try {
      await converter.prepare();
      const err = await converter.copy().then(
        () => assert.fail('the copy should have stopped'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof TransformError, String(err));
      assert.equal(err.key, '["2"]');
      assert.match(
        err.message,
        /its person_tag_bad row has person_id = "3", not the source row's id \("2"\), which sourceKeyIn promises/,
      );
    } finally {
      await converter.stop({ dropCapture: true });
    }
  });

  test('a sourceKeyIn that does not fit the key, or a table without an index on it, is refused with the fix', async () => {
    const wrongArity = converterFor({
      conversion: defineConversion({
        tables: { author: { sourceKeyIn: { person: ['id', 'name'] }, transform: toPerson('') } },
      }),
      name: 'keyed_arity',
    });
    try {
      await assert.rejects(
        wrongArity.prepare(),
        /author\.sourceKeyIn names 2 column\(s\) of person, but author's key has 1 \(id\)/,
      );
    } finally {
      await wrongArity.stop({ dropCapture: true });
    }

    // A text key held in an integer column: '01' and '1' would share rows.
    await oldDb.query(`CREATE TABLE author_fam (id text PRIMARY KEY, name text NOT NULL, tags text NOT NULL DEFAULT '');
      INSERT INTO author_fam VALUES ('01', 'Ada', '');`);
    await newDb.query(`CREATE TABLE person_fam (id int PRIMARY KEY, name text NOT NULL);
      CREATE TABLE person_tag_fam (person_id int, n int, tag text NOT NULL, PRIMARY KEY (person_id, n));`);
    const family = converterFor({ conversion: keyedConversion('_fam'), name: 'keyed_fam' });
    try {
      await family.prepare();
      await assert.rejects(
        family.copy(),
        /person_fam\.id is integer but the source key column author_fam\.id it holds is text/,
      );
      assert.deepEqual(
        await rows(newDb, 'SELECT count(*)::int AS n FROM person_fam'),
        [{ n: 0 }],
        'nothing copied',
      );
    } finally {
      await family.stop({ dropCapture: true });
    }

    // The tag table's key leads with n: reading it by person_id would scan it for every change.
    await tables('_noidx', 'n, person_id');
    const { converter, failure } = await streamingUntilFailure(pair, {
      conversion: keyedConversion('_noidx'),
      name: 'keyed_noidx',
    });
    try {
      await oldDb.query(`UPDATE author_noidx SET tags = 'math' WHERE id = 1`);
      assert.match(
        String(await withDeadline('the stream stopping on the missing index', failure, 30_000)),
        /target table person_tag_noidx has no index leading with person_id, which sourceKeyIn reads it by/,
      );
    } finally {
      await converter.stop({ dropCapture: true });
    }
  });

  test('a resume must keep the lineage as its copy did; any spelling of a table is the table', async () => {
    await tables('_mode');
    const keyed = converterFor({
      conversion: keyedConversion('_mode'),
      name: 'keyed_mode',
    });
    await keyed.prepare();
    await keyed.copy();
    await keyed.stop(); // interrupted: the slot stays, the copy is done
    const stored = converterFor({
      conversion: defineConversion({ tables: { author_mode: { transform: toPerson('_mode') } } }),
      name: 'keyed_mode',
    });
    try {
      await assert.rejects(
        stored.prepare(),
        /author_mode's lineage was kept in its target rows \(sourceKeyIn .*\) when keyed_mode copied it, and the plan now keeps it as lineage rows/,
      );
    } finally {
      await stored.stop({ dropCapture: true });
    }

    await tables('_sp');
    const spelled = converterFor({
      conversion: defineConversion({
        tables: {
          author_sp: {
            sourceKeyIn: { 'public.person_sp': ['id'], person_tag_sp: ['person_id'] },
            transform: toPerson('_sp'),
          },
        },
      }),
      name: 'keyed_sp',
    });
    try {
      // `public.person_sp` and `person_sp` are one table (src/sql.ts): the copy goes through.
      await spelled.prepare();
      await spelled.copy();
      assert.deepEqual(await rows(newDb, 'SELECT count(*)::int AS n FROM person_sp'), [{ n: 3 }]);
    } finally {
      await spelled.stop({ dropCapture: true });
    }
  });

  test('keys compare in the text form PostgreSQL prints them in', () => {
    const target = {
      name: 't',
      key: ['a', 'b', 'c'],
      columns: new Set(['a', 'b', 'c']),
      types: new Map<string, string | undefined>([
        ['a', 'bigint'],
        ['b', 'uuid'],
        ['c', 'text'],
      ]),
    };
    assert.deepEqual(canonicalKey(target, ['+007', '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}', ' x ']), [
      '7',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      ' x ',
    ]);
    // PostgreSQL 16 and later read these integers too.
    const ints = ['0x1F', '-0o17', '0b101', '1_000', ' -0 '].map((v) => canonicalKey(target, [v, '', ''])[0]);
    assert.deepEqual(ints, ['31', '-15', '5', '1000', '0']);
  });
});
