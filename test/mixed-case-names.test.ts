// Tables named the way ORMs create them (issue 21, item 3): quoted PascalCase tables (Prisma's
// `"User"`, a join table `"ArticleTag"` with a composite key) and camelCase columns (`"createdAt"`),
// spelled in the conversion each way a user may write them (`User`, `"Article"`, `public."ArticleTag"`,
// `public.Remark`). Before one rule and one quoting function, `User` made the dry run and revoke
// fencing look for `user`, and `"User"` made the copy look for `public."""User"""`. Through copy,
// stream, stored and keyed lineage, lookups, sequences, the dry run, every fencing mode and
// late-write detection and `imago status`; and a table spelled in the wrong case is named with the spelling it has.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { isDeepStrictEqual, promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startClusterPair, type ClusterPair } from './fixtures/cluster-pair.js';
import { root } from './fixtures/driver-run.js';
import { waitUntil } from '../src/deadline.js';
import { Converter } from '../src/conversion/converter.js';
import { loadConversion } from '../src/conversion/load-module.js';
import { bringSequencesPast } from '../src/conversion/sequences.js';
import { dryRun } from '../src/driver/dry-run.js';
import { validatePlan } from '../src/plan/index.js';
import { Fence, LateWriteDetector } from '../src/switchover/index.js';
import { fencingModes } from '../src/plan/index.js';
import { ImagoError } from '../src/errors.js';
import { parseTableName, quoteQualified, tableKey } from '../src/sql.js';

const run = promisify(execFile);
const ROLE = 'orm_app';
let pair: ClusterPair;
let dir: string;
let conversionFile: string;
let converter: Converter | undefined;
const lateWrites = new LateWriteDetector();

const OLD_SCHEMA = `
  CREATE TABLE "User" (id serial PRIMARY KEY, "displayName" text NOT NULL, "createdAt" timestamp(3) NOT NULL DEFAULT '2026-01-01 10:00:00.123');
  CREATE TABLE "Article" (id serial PRIMARY KEY, "authorId" int NOT NULL REFERENCES "User", title text NOT NULL, "tagNames" text[] NOT NULL DEFAULT '{}');
  CREATE TABLE "ArticleTag" ("articleId" int NOT NULL REFERENCES "Article", "tagId" int NOT NULL, "addedAt" timestamp(3) NOT NULL DEFAULT '2026-01-02', PRIMARY KEY ("articleId", "tagId"));
  CREATE TABLE "Comment" (id serial PRIMARY KEY, "articleId" int NOT NULL, body text NOT NULL);
  INSERT INTO "User" ("displayName") VALUES ('Ada'), ('Grace'), ('Linus');
  INSERT INTO "Article" ("authorId", title, "tagNames") VALUES (1, 'On engines', '{math,engines}'), (2, 'On compilers', '{cobol}');
  INSERT INTO "ArticleTag" ("articleId", "tagId") VALUES (1, 10), (1, 11), (2, 10);
  INSERT INTO "Comment" ("articleId", body) VALUES (1, 'first'), (2, 'second');
  CREATE ROLE ${ROLE} LOGIN PASSWORD 'orm';
  GRANT USAGE ON SCHEMA public TO ${ROLE};
  GRANT SELECT, INSERT, UPDATE, DELETE ON "User", "Article", "ArticleTag", "Comment" TO ${ROLE};
  GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${ROLE};
`;

const NEW_SCHEMA = `
  CREATE TABLE "User" (id serial PRIMARY KEY, "displayName" text NOT NULL, "createdAt" timestamp(3) NOT NULL);
  CREATE TABLE "Post" (id int PRIMARY KEY, "authorName" text, title text NOT NULL);
  CREATE TABLE "PostTag" ("postId" int NOT NULL, name text NOT NULL, PRIMARY KEY ("postId", name));
  CREATE TABLE "ArticleTag" ("articleId" int NOT NULL, "tagId" int NOT NULL, "addedAt" timestamp(3) NOT NULL, PRIMARY KEY ("articleId", "tagId"));
  CREATE TABLE "Remark" (id int PRIMARY KEY, "postId" int NOT NULL, body text NOT NULL);
`;

// Each table spelled another way: as stored, quoted, schema-qualified with quotes, qualified without.
const CONVERSION = `import { defineConversion, identity } from ${JSON.stringify(join(root, 'src/conversion/api.js'))};
const tags = (text) => (text === '{}' ? [] : text.slice(1, -1).split(','));
export default defineConversion({
  tables: {
    User: identity('"User"'),
    '"Article"': {
      async transform(row, ctx) {
        const author = await ctx.lookup('public."User"', { id: row.authorId });
        return [
          { table: '"Post"', row: { id: row.id, authorName: author?.displayName ?? null, title: row.title } },
          ...tags(row.tagNames).map((name) => ({ table: 'PostTag', row: { postId: row.id, name } })),
        ];
      },
    },
    'public."ArticleTag"': identity(),
    'public.Comment': {
      sourceKeyIn: { 'public.Remark': ['id'] },
      transform: (row) => [{ table: '"Remark"', row: { id: row.id, postId: row.articleId, body: row.body } }],
    },
  },
});
`;

before(async () => {
  pair = await startClusterPair('mixed-case');
  await pair.oldDb.query(OLD_SCHEMA);
  await pair.newDb.query(NEW_SCHEMA);
  dir = mkdtempSync(join(tmpdir(), 'imago-mixed-case-'));
  conversionFile = join(dir, 'conversion.mjs');
  writeFileSync(conversionFile, CONVERSION);
});

after(async () => {
  await converter?.stop({ dropCapture: true }).catch(() => {});
  await pair?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function rows(client: pg.Client, sql: string): Promise<unknown[]> {
  return (await client.query(sql)).rows;
}

/** Polls the new database until `sql` returns `expected` (the stream applies asynchronously). */
async function eventually(sql: string, expected: unknown[]): Promise<void> {
  let last: unknown[] = [];
  await waitUntil(
    `the new database to show ${JSON.stringify(expected)} for ${sql}`,
    async () => {
      last = await rows(pair.newDb, sql);
      return isDeepStrictEqual(last, expected) || undefined;
    },
    { timeoutMs: 20_000, intervalMs: 50 },
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}; last seen ${JSON.stringify(last)}`);
  });
}

test('one reading of every spelling, and one rendering for SQL', () => {
  for (const spelling of ['User', '"User"', 'public."User"', 'public.User', '"public"."User"']) {
    assert.deepEqual(parseTableName(spelling), { schema: 'public', name: 'User' }, spelling);
    assert.equal(tableKey(spelling), 'User', spelling);
    assert.equal(quoteQualified(spelling), '"public"."User"', spelling);
  }
  assert.equal(tableKey('"order.line"'), '"order.line"');
  assert.equal(quoteQualified('sales."Order"'), '"sales"."Order"');
  for (const bad of ['"User', 'a.b.c', 'Us"er', '', 'public.', '"User"x'])
    assert.throws(() => parseTableName(bad, "the conversion's tables"), ImagoError, bad);
});

test('two spellings of one table in a conversion are refused, naming both', async () => {
  const file = join(dir, 'twice.ts');
  writeFileSync(
    file,
    `export default { tables: { User: { identity: true }, '"User"': { identity: true } } };\n`,
  );
  await assert.rejects(loadConversion(file), (err: unknown) => {
    assert.ok(err instanceof ImagoError);
    assert.match(err.message, /names table public\.User twice: 'User' and '"User"'/);
    assert.match(err.hint ?? '', /keep one entry/);
    return true;
  });
});

test('the dry run finds every table, spelled as the conversion spells it', async () => {
  const plan = validatePlan(
    {
      name: 'mixed_case',
      old: { database: pair.old.url, app: { url: 'http://127.0.0.1:1' } },
      new: { database: pair.new.url, app: { url: 'http://127.0.0.1:1' } },
      conversion: conversionFile,
      ingress: { nodes: [{ name: 'n1', control: 'http://127.0.0.1:1', token: 'x'.repeat(16) }] },
      switchover: { fencing: { mode: 'revoke', role: ROLE } },
    },
    join(dir, 'plan.json'),
  );
  const result = await dryRun(plan);
  const problems = result.problems.filter((p) => !p.startsWith('ingress node'));
  assert.deepEqual(problems, []);
  assert.deepEqual(
    result.tables.map((t) => [t.table, t.rows, t.sampled, t.transformErrors]),
    [
      ['User', 3, 3, 0],
      ['"Article"', 2, 2, 0],
      ['public."ArticleTag"', 3, 3, 0],
      ['public.Comment', 2, 2, 0],
    ],
  );
  assert.equal(result.fencing.ok, true, result.fencing.error);
  // Both databases were read: every target found, with its key, and no column narrows.
  assert.deepEqual(result.warnings, []);
});

test('a table spelled in the wrong case is named, with the spelling it has', async () => {
  const wrong = new Converter({
    sourceUrl: pair.old.url,
    targetUrl: pair.new.url,
    conversion: { tables: { user: { identity: true } } },
    name: 'mixed_case_wrong',
  });
  try {
    await assert.rejects(wrong.prepare(), (err: unknown) => {
      assert.ok(err instanceof ImagoError);
      assert.equal(err.message, 'table public.user does not exist in the old database');
      assert.match(err.hint ?? '', /did you mean User\?/);
      return true;
    });
  } finally {
    await wrong.stop({ dropCapture: true });
  }
});

test('copy, stream, lineage, lookups and sequences', async () => {
  const conversion = await loadConversion(conversionFile);
  converter = new Converter({
    sourceUrl: pair.old.url,
    targetUrl: pair.new.url,
    conversion,
    name: 'mixed_case',
  });
  converter.onApplied(lateWrites.observe);
  await converter.prepare();
  await converter.copy();
  let failure: unknown;
  await converter.startStreaming((err) => (failure = err));

  assert.deepEqual(
    await rows(pair.newDb, `SELECT id, "displayName", "createdAt"::text AS at FROM "User" ORDER BY id`),
    [
      { id: 1, displayName: 'Ada', at: '2026-01-01 10:00:00.123' },
      { id: 2, displayName: 'Grace', at: '2026-01-01 10:00:00.123' },
      { id: 3, displayName: 'Linus', at: '2026-01-01 10:00:00.123' },
    ],
  );
  assert.deepEqual(await rows(pair.newDb, `SELECT id, "authorName", title FROM "Post" ORDER BY id`), [
    { id: 1, authorName: 'Ada', title: 'On engines' },
    { id: 2, authorName: 'Grace', title: 'On compilers' },
  ]);
  assert.deepEqual(await rows(pair.newDb, `SELECT "postId", name FROM "PostTag" ORDER BY 1, 2`), [
    { postId: 1, name: 'engines' },
    { postId: 1, name: 'math' },
    { postId: 2, name: 'cobol' },
  ]);
  assert.deepEqual(await rows(pair.newDb, `SELECT "articleId", "tagId" FROM "ArticleTag" ORDER BY 1, 2`), [
    { articleId: 1, tagId: 10 },
    { articleId: 1, tagId: 11 },
    { articleId: 2, tagId: 10 },
  ]);
  assert.deepEqual(await rows(pair.newDb, `SELECT id, "postId", body FROM "Remark" ORDER BY id`), [
    { id: 1, postId: 1, body: 'first' },
    { id: 2, postId: 2, body: 'second' },
  ]);

  // The stream: inserts (a lookup of a user inserted in the same transaction), updates that shrink a
  // 1:N tag list (stored lineage), deletes by composite key and through keyed lineage.
  await pair.oldDb.query(`BEGIN;
    INSERT INTO "User" ("displayName") VALUES ('Barbara');
    INSERT INTO "Article" ("authorId", title, "tagNames") VALUES (4, 'On abstraction', '{clu,adt}');
    UPDATE "Article" SET "tagNames" = '{engines}', title = 'On the engine' WHERE id = 1;
    UPDATE "User" SET "displayName" = 'Grace H.' WHERE id = 2;
    DELETE FROM "ArticleTag" WHERE "articleId" = 1 AND "tagId" = 11;
    UPDATE "ArticleTag" SET "tagId" = 12 WHERE "articleId" = 2 AND "tagId" = 10;
    DELETE FROM "Comment" WHERE id = 1;
    INSERT INTO "Comment" ("articleId", body) VALUES (3, 'third');
    COMMIT`);
  await eventually(`SELECT "postId", name FROM "PostTag" ORDER BY 1, 2`, [
    { postId: 1, name: 'engines' },
    { postId: 2, name: 'cobol' },
    { postId: 3, name: 'adt' },
    { postId: 3, name: 'clu' },
  ]);
  assert.equal(failure, undefined);
  assert.deepEqual(await rows(pair.newDb, `SELECT id, "authorName", title FROM "Post" ORDER BY id`), [
    { id: 1, authorName: 'Ada', title: 'On the engine' },
    { id: 2, authorName: 'Grace', title: 'On compilers' },
    { id: 3, authorName: 'Barbara', title: 'On abstraction' },
  ]);
  assert.deepEqual(await rows(pair.newDb, `SELECT id, "displayName" FROM "User" ORDER BY id`), [
    { id: 1, displayName: 'Ada' },
    { id: 2, displayName: 'Grace H.' },
    { id: 3, displayName: 'Linus' },
    { id: 4, displayName: 'Barbara' },
  ]);
  assert.deepEqual(await rows(pair.newDb, `SELECT "articleId", "tagId" FROM "ArticleTag" ORDER BY 1, 2`), [
    { articleId: 1, tagId: 10 },
    { articleId: 2, tagId: 12 },
  ]);
  assert.deepEqual(await rows(pair.newDb, `SELECT id, "postId", body FROM "Remark" ORDER BY id`), [
    { id: 2, postId: 2, body: 'second' },
    { id: 3, postId: 3, body: 'third' },
  ]);
  // The lineage names tables by their canonical spelling, whichever spelling the transform used.
  assert.deepEqual(await rows(pair.newDb, `SELECT DISTINCT source_table FROM imago.lineage ORDER BY 1`), [
    { source_table: 'Article' },
  ]);

  // Sequences: the new "User"'s serial is brought past the converted ids.
  assert.ok((await bringSequencesPast(pair.newDb)) >= 1);
  const next = await rows(pair.newDb, `SELECT nextval(pg_get_serial_sequence('"User"', 'id'))::int AS n`);
  assert.deepEqual(next, [{ n: 5 }]);
});

/** Whether the app's role can write "User" now (a fresh session: read-only applies to new ones). */
async function appCanWrite(): Promise<boolean> {
  const url = new URL(pair.old.url);
  url.username = ROLE;
  url.password = 'orm';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await client.query(`UPDATE "User" SET "displayName" = "displayName" WHERE id = 1`);
    await client.query(
      `UPDATE "ArticleTag" SET "addedAt" = "addedAt" WHERE "articleId" = 1 AND "tagId" = 10`,
    );
    return true;
  } catch {
    return false;
  } finally {
    await client.end();
  }
}

for (const mode of fencingModes)
  test(`fencing ${mode} fences the conversion's tables, and lifting gives them back; late writes are named`, async () => {
    assert.ok(converter, 'the conversion test ran first');
    const conversion = await loadConversion(conversionFile);
    const fence = new Fence(pair.old.url, mode, ROLE, Object.keys(conversion.tables));
    assert.equal(await appCanWrite(), true);
    const record = await fence.plan();
    if (mode === 'revoke')
      assert.deepEqual(
        record.grants?.map((g) => [g.table, [...g.privileges].sort().join(',')]),
        [
          ['User', 'DELETE,INSERT,UPDATE'],
          ['Article', 'DELETE,INSERT,UPDATE'],
          ['ArticleTag', 'DELETE,INSERT,UPDATE'],
          ['Comment', 'DELETE,INSERT,UPDATE'],
        ],
      );
    // What commits after the fence LSN is a late write, named by table as the conversion names it.
    const before = lateWrites.writes().length;
    lateWrites.arm(await fence.apply(record, 5_000));
    assert.equal(await appCanWrite(), mode === 'none');
    await pair.oldDb.query(`UPDATE "User" SET "displayName" = 'Ada ${mode}' WHERE id = 1`);
    await eventually(`SELECT "displayName" FROM "User" WHERE id = 1`, [{ displayName: `Ada ${mode}` }]);
    lateWrites.disarm();
    const late = lateWrites.writes().slice(before);
    // Unfenced, the app's own two writes are late writes too.
    const app = mode === 'none' ? [{ User: 1 }, { ArticleTag: 1 }] : [];
    assert.deepEqual(
      late.map((w) => w.tables),
      [...app, { User: 1 }],
    );
    await fence.lift(record);
    assert.equal(await appCanWrite(), true);
  });

test('a rollback fences the new database: what it refuses names the new database', async () => {
  await assert.rejects(
    new Fence(pair.new.url, 'revoke', 'no_such_app_role', ['user_account'], 'new').plan(),
    /fencing role "no_such_app_role" does not exist in the new database/,
  );
  await pair.newDb.query(`DO $$ BEGIN CREATE ROLE v2_app LOGIN; EXCEPTION WHEN duplicate_object THEN END $$`);
  await assert.rejects(
    new Fence(pair.new.url, 'revoke', 'v2_app', ['"NoSuchTable"'], 'new').plan(),
    /table public\.NoSuchTable does not exist in the new database, so revoke fencing cannot fence it/,
  );
});

test('imago status names a quoted table whose indexes an unfinished copy deferred', async () => {
  await pair.oldDb.query(`CREATE TABLE "Gadget" (id int PRIMARY KEY, "serialNo" text NOT NULL);
    INSERT INTO "Gadget" VALUES (1, 'g-1'), (2, 'g-2')`);
  await pair.newDb.query(`CREATE TABLE "Gadget" (id int PRIMARY KEY, "serialNo" text NOT NULL UNIQUE)`);
  const unfinished = new Converter({
    sourceUrl: pair.old.url,
    targetUrl: pair.new.url,
    conversion: {
      tables: {
        '"Gadget"': {
          transform: (row) => {
            if (row.id === '2') throw new Error('stopped half-way');
            return [
              { table: 'public."Gadget"', row: { id: row.id ?? null, serialNo: row.serialNo ?? null } },
            ];
          },
        },
      },
    },
    name: 'mixed_status',
  });
  try {
    await unfinished.prepare();
    await assert.rejects(unfinished.copy(), /stopped half-way/);
  } finally {
    // As a crash leaves it (an abort would build the indexes again); the cluster goes with the test.
    await unfinished.stop();
  }
  const file = join(dir, 'status.yaml');
  writeFileSync(
    file,
    JSON.stringify({
      name: 'mixed_status',
      old: { database: pair.old.url, app: { url: 'http://127.0.0.1:1' } },
      new: { database: pair.new.url, app: { url: 'http://127.0.0.1:1' } },
      conversion: conversionFile,
      ingress: { nodes: [{ name: 'n1', control: 'http://127.0.0.1:1', token: 'x'.repeat(16) }] },
    }),
  );
  const status = await run(process.execPath, [join(root, 'bin/imago.js'), 'status', file, '--json'], {
    cwd: root,
  });
  assert.match(status.stderr, /new database: indexes of Gadget deferred by an unfinished copy/);
  const result = JSON.parse(status.stdout.trim().split('\n').at(-1) ?? '{}') as {
    deferredIndexes?: string[];
  };
  assert.deepEqual(result.deferredIndexes, ['Gadget']);
});
