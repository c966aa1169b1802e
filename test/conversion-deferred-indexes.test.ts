// Deferred index builds during the bulk copy: the indexes of empty targets are dropped for the copy
// and built again after it, exactly as they were; a table other tables' foreign keys depend on keeps
// its indexes; a copy interrupted with its indexes deferred starts over and ends with them; an N:1
// transform that writes a key twice is copied again with the indexes in place; a copy that starts
// over empties a table outside the conversion referencing a target only when it is empty.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startClusterPair, type ClusterPair } from './fixtures/cluster-pair.js';
import { Converter } from '../src/conversion/converter.js';
import { defineConversion, type TargetRow } from '../src/conversion/api.js';
import { deferIndexes, deferredTables } from '../src/conversion/deferred-indexes.js';
import { ReferencedTargetError } from '../src/conversion/empty-targets.js';

let pair: ClusterPair;
let oldDb: pg.Client;
let newDb: pg.Client;

const conversion = (nToOne: boolean) =>
  defineConversion({
    tables: {
      thing: {
        transform: (row): TargetRow[] => [
          {
            table: 'gadget',
            row: { id: row.id ?? null, code: `c${row.id}`, during: `[${row.id},${Number(row.id) + 1})` },
          },
          { table: 'gadget_note', row: { gadget_id: row.id ?? null, note: row.note ?? null } },
          // N:1 (kind repeats): the last source row copied wins, as an upsert would.
          ...(nToOne ? [{ table: 'kind', row: { name: row.kind ?? null, last_id: row.id ?? null } }] : []),
        ],
      },
    },
  });

/** Everything about a table's indexes and constraints that a rebuild must reproduce. */
async function schemaOf(client: pg.Client, table: string): Promise<unknown[]> {
  const { rows } = await client.query(
    `SELECT 'index' AS what, indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = $1
     UNION ALL
     SELECT 'constraint', conname, contype::text || ' ' || condeferrable::text || condeferred::text || ' ' || pg_get_constraintdef(oid) 
       FROM pg_constraint WHERE conrelid = $1::regclass
     UNION ALL
     SELECT 'column', attname, attnotnull::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0
     ORDER BY 1, 2`,
    [table],
  );
  return rows;
}

const TABLES = ['gadget', 'gadget_note', 'kind'];

const converterFor = (name: string, nToOne = false) =>
  new Converter({ sourceUrl: pair.old.url, targetUrl: pair.new.url, conversion: conversion(nToOne), name });

async function copyAll(name: string, nToOne = false): Promise<void> {
  const converter = converterFor(name, nToOne);
  try {
    await converter.prepare();
    await converter.copy();
  } finally {
    await converter.stop({ dropCapture: true });
  }
}

describe('deferred index builds', () => {
  before(async () => {
    pair = await startClusterPair('defer');
    ({ oldDb, newDb } = pair);
    await oldDb.query(`
      CREATE TABLE thing (id int PRIMARY KEY, note text, kind text NOT NULL);
      INSERT INTO thing SELECT g, 'note ' || g, 'k' || (g % 3) FROM generate_series(1, 3000) g;`);
    await newDb.query(`
      CREATE TABLE gadget (id int PRIMARY KEY, code text NOT NULL, during int4range,
        CONSTRAINT gadget_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED,
        CONSTRAINT gadget_no_overlap EXCLUDE USING gist (during WITH &&));
      CREATE INDEX gadget_code_lower ON gadget (lower(code)) WHERE id > 10;
      CREATE TABLE gadget_note (gadget_id int NOT NULL, note text, CONSTRAINT note_pk PRIMARY KEY (gadget_id) INCLUDE (note));
      CREATE INDEX gadget_note_desc ON gadget_note (note DESC NULLS LAST);
      CREATE TABLE kind (name text PRIMARY KEY, last_id int);`);
  });

  after(() => pair?.stop());

  test('indexes of empty targets are built after the copy exactly as they were', async () => {
    const before = await Promise.all(TABLES.map((t) => schemaOf(newDb, t)));
    await copyAll('defer_exact');
    assert.deepEqual(await Promise.all(TABLES.map((t) => schemaOf(newDb, t))), before);
    assert.deepEqual(await deferredTables(newDb), []);
    const { rows } = await newDb.query<{ n: number }>('SELECT count(*)::int AS n FROM gadget');
    assert.equal(rows[0]?.n, 3000);
  });

  test('an N:1 transform that wrote a key twice is copied again with the unique indexes in place', async () => {
    // A fresh new database for another conversion (the lineage is one conversion's).
    await newDb.query('TRUNCATE gadget, gadget_note, kind, imago.lineage');
    const before = await Promise.all(TABLES.map((t) => schemaOf(newDb, t)));
    await copyAll('defer_n_to_one', true);
    assert.deepEqual(await Promise.all(TABLES.map((t) => schemaOf(newDb, t))), before);
    assert.deepEqual((await newDb.query('SELECT name, last_id FROM kind ORDER BY name')).rows, [
      { name: 'k0', last_id: 3000 },
      { name: 'k1', last_id: 2998 },
      { name: 'k2', last_id: 2999 },
    ]);
    const { rows } = await newDb.query<{ n: number }>('SELECT count(*)::int AS n FROM gadget_note');
    assert.equal(rows[0]?.n, 3000);
  });

  test('a table referenced by a foreign key is not deferred; an empty eligible one is', async () => {
    await newDb.query(`TRUNCATE gadget, gadget_note, kind, imago.lineage;
      CREATE TABLE part (id int PRIMARY KEY, gadget_id int REFERENCES gadget (id))`);
    try {
      assert.equal(await deferIndexes(newDb, 'gadget'), false);
      assert.equal(await deferIndexes(newDb, 'gadget_note'), true);
      assert.deepEqual(await deferredTables(newDb), ['gadget_note']);
      const { rows } = await newDb.query(`SELECT indexname FROM pg_indexes WHERE tablename = 'gadget_note'`);
      assert.deepEqual(rows, []);
    } finally {
      await newDb.query('DROP TABLE part');
    }
  });

  test('a copy interrupted with its indexes deferred starts over and ends with them rebuilt', async () => {
    // The state an interrupted copy leaves: slot and checkpoint of an unfinished copy, indexes deferred,
    // some rows written (the previous test deferred gadget_note's).
    const converter = converterFor('defer_crash', true);
    await converter.prepare();
    await deferIndexes(newDb, 'kind');
    await newDb.query(
      `INSERT INTO gadget_note VALUES (1, 'half'), (1, 'copied'); INSERT INTO kind VALUES ('k0', 1)`,
    );
    await converter.stop(); // no copy: the slot stays, as after a kill -9
    assert.deepEqual(await deferredTables(newDb), ['gadget_note', 'kind']);

    await copyAll('defer_crash', true);
    assert.deepEqual(await deferredTables(newDb), []);
    const { rows } = await newDb.query<{ n: number }>('SELECT count(*)::int AS n FROM gadget_note');
    assert.equal(rows[0]?.n, 3000);
    const defs = await newDb.query(
      `SELECT indexname FROM pg_indexes WHERE tablename IN ('gadget_note', 'kind') ORDER BY 1`,
    );
    assert.deepEqual(
      defs.rows.map((r: { indexname: string }) => r.indexname),
      ['gadget_note_desc', 'kind_pkey', 'note_pk'],
    );
  });

  test('a copy starting over empties a referencing table outside the conversion only when it is empty', async () => {
    // part references a target, part_note references part: both outside the conversion.
    await newDb.query(`CREATE TABLE part (id int PRIMARY KEY, gadget_id int CONSTRAINT part_gadget REFERENCES gadget (id));
      CREATE TABLE part_note (part_id int REFERENCES part (id))`);
    const count = async (table: string) =>
      (await newDb.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]?.n;
    try {
      const interrupted = converterFor('defer_ref', true);
      await interrupted.prepare();
      await interrupted.stop(); // the slot stays: the next run starts the copy over
      await newDb.query('INSERT INTO part VALUES (1, 1)');
      await assert.rejects(copyAll('defer_ref', true), (err: unknown) => {
        assert.ok(err instanceof ReferencedTargetError, String(err));
        assert.equal(err.referencing, 'part');
        assert.equal(err.constraint, 'part_gadget');
        assert.match(err.message, /gadget must be emptied, but part .* holds rows/);
        return true;
      });
      // Nothing was emptied.
      assert.equal(await count('gadget'), 3000);
      assert.equal(await count('part'), 1);

      await newDb.query('DELETE FROM part');
      await copyAll('defer_ref', true);
      assert.equal(await count('gadget'), 3000);
      assert.equal(await count('imago.lineage'), 3000);
      assert.equal(await count('part'), 0);
      const { rows } = await newDb.query(`SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1`);
      assert.deepEqual(rows, [{ conname: 'part_gadget' }, { conname: 'part_note_part_id_fkey' }]);
    } finally {
      await newDb.query('DROP TABLE part_note, part');
    }
  });
});
