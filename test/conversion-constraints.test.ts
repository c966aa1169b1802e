// A row the new database refuses — the source has duplicate slugs that the new schema makes unique,
// a NULL the new schema forbids, a value its check refuses, a reference to a row it lacks — is the
// user's error, named precisely: the target table, the constraint with its definition and
// PostgreSQL's detail, the source table and the key of the source row that produced it, and a hint;
// no stack trace. In the bulk copy (rows go by COPY in batches, the refused one is found in its
// batch) and in the change stream. Nothing is lost: the slot and checkpoint stay where they were, so
// once the transform is fixed the same command goes on from there.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startClusterPair, type ClusterPair } from './fixtures/cluster-pair.js';
import { createDatabase } from '../src/universe/cluster.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { parseLsn } from '../src/capture/lsn.js';
import { Converter } from '../src/conversion/converter.js';
import { RefusedRowError } from '../src/conversion/refused-row.js';
import conversion from './fixtures/slug-conversion.js';
import { root } from './fixtures/driver-run.js';

const conversionModule = fileURLToPath(new URL('./fixtures/slug-conversion.ts', import.meta.url));
let pair: ClusterPair;

before(async () => {
  pair = await startClusterPair('constraints');
});
after(() => pair?.stop());

const POST = `CREATE TABLE post (id int PRIMARY KEY, slug text NOT NULL CONSTRAINT post_slug_key UNIQUE, title text)`;

/** A database on each cluster: the source's articles (`rows`, then `sql`), the new schema's post. */
async function databases(name: string, rows: number, sql = '', target = POST) {
  const oldUrl = await createDatabase(pair.old, name);
  const newUrl = await createDatabase(pair.new, name);
  await query(
    oldUrl,
    `CREATE TABLE article (id int PRIMARY KEY, slug text, title text);
    INSERT INTO article SELECT g, 'a-' || g, 'title ' || g FROM generate_series(1, ${rows}) g; ${sql}`,
  );
  await query(newUrl, target);
  return { oldUrl, newUrl };
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** `imago convert` as a user runs it, with its JSON events and its stderr. */
function convert(name: string, urls: { oldUrl: string; newUrl: string }, env: Record<string, string> = {}) {
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin/imago.js'),
      'convert',
      '--json',
      ...[
        '--old-url',
        urls.oldUrl,
        '--new-url',
        urls.newUrl,
        '--conversion',
        conversionModule,
        '--name',
        name,
      ],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let stderr = '';
  const events: string[] = [];
  const warnings: string[] = [];
  const waiters = new Map<string, () => void>();
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const parsed = JSON.parse(line) as { event?: string; message?: string };
    const event = parsed.event ?? 'result';
    events.push(event);
    if (event === 'warning') warnings.push(parsed.message ?? '');
    waiters.get(event)?.();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    exit: () =>
      withDeadline(`imago convert ${name} to exit`, exit, 90_000).then((code) => ({
        code,
        stderr,
        warnings,
      })),
    event: (name: string) =>
      withDeadline(
        `imago convert reaching "${name}"`,
        new Promise<void>((resolve, reject) => {
          if (events.includes(name)) return resolve();
          waiters.set(name, resolve);
          void exit.then(() => reject(new Error(`imago convert exited before "${name}": ${stderr}`)));
        }),
        90_000,
      ),
    stop: async () => {
      child.kill('SIGTERM');
      await withDeadline('imago convert to stop', exit, 30_000);
    },
  };
}

function assertUserError(stderr: string): void {
  assert.doesNotMatch(stderr, /internal error/, stderr);
  assert.doesNotMatch(stderr, /^\s+at .*\(.*:\d+:\d+\)$/m, `no stack trace:\n${stderr}`);
}

async function slot(oldUrl: string, name: string) {
  return (
    await query<{ confirmed: string }>(
      oldUrl,
      'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
      [`${name}_slot`],
    )
  )[0];
}

test('bulk copy: a duplicate slug is named by table, constraint and source key; the fixed transform goes on', async () => {
  // 50,000 rows: the duplicate of row 300 is row 45,000, in the second batch of 40,000.
  const urls = await databases('copy_unique', 50_000, `UPDATE article SET slug = 'a-300' WHERE id = 45000`);
  const run = convert('copy_unique', urls);
  const { code, stderr, warnings } = await run.exit();
  assert.equal(code, 2, stderr);
  assertUserError(stderr);
  assert.match(
    stderr,
    /refused a row for public\.post during the bulk copy: unique constraint post_slug_key/,
  );
  assert.match(stderr, /UNIQUE \(slug\)/, 'the constraint with its columns');
  assert.match(stderr, /Key \(slug\)=\(a-300\) already exists/, "PostgreSQL's detail");
  assert.match(stderr, /produced by article row \["45000"\]/, 'the source table and key');
  assert.match(stderr, /hint: .*dedupe them in article's transform/);
  // The deferred unique index failed first: the warning says what that may mean, not only "N:1".
  assert.match(
    warnings.join('\n'),
    /unique index post_slug_key could not be built \(Key \(slug\)=\(a-300\) is duplicated\.\)/,
  );
  assert.match(warnings.join('\n'), /a row the new schema refuses is named with its source row/);
  // JSON for scripts: the same message.
  assert.ok((await slot(urls.oldUrl, 'copy_unique')) !== undefined, 'the slot stays for the next run');

  const fixed = convert('copy_unique', urls, { IMAGO_TEST_DEDUPE: '1' });
  await fixed.event('streaming');
  await fixed.stop();
  const [copied] = await query<{ n: string; dup: string }>(
    urls.newUrl,
    `SELECT count(*)::text AS n, (SELECT slug FROM post WHERE id = 45000) AS dup FROM post`,
  );
  assert.deepEqual(copied, { n: '50000', dup: 'a-300-45000' });
});

test('change stream: a duplicate slug stops the stream before it; nothing past it acknowledged; fixed, it goes on', async () => {
  const urls = await databases('stream_unique', 100);
  const run = convert('stream_unique', urls);
  await run.event('streaming');
  const before = parseLsn(
    (await query<{ lsn: string }>(urls.oldUrl, 'SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn,
  );
  await query(urls.oldUrl, `INSERT INTO article VALUES (101, 'a-5', 'a duplicate')`);
  await query(urls.oldUrl, `INSERT INTO article VALUES (102, 'a-102', 'after it')`);
  const { code, stderr } = await run.exit();
  assert.equal(code, 2, stderr);
  assertUserError(stderr);
  assert.match(
    stderr,
    /refused a row for public\.post during the change stream: unique constraint post_slug_key/,
  );
  assert.match(stderr, /UNIQUE \(slug\)/);
  assert.match(stderr, /Key \(slug\)=\(a-5\) already exists/);
  assert.match(
    stderr,
    /produced by article row \["101"\] \(the insert in the source transaction that committed at /,
  );
  assert.match(stderr, /hint: .*dedupe/);
  // Nothing of it or after it applied, checkpointed or acknowledged.
  const [checkpoint] = await query<{ lsn: string }>(
    urls.newUrl,
    `SELECT commit_lsn::text AS lsn FROM imago.checkpoint WHERE stream = 'stream_unique'`,
  );
  assert.ok(
    checkpoint && parseLsn(checkpoint.lsn) <= before,
    `checkpoint ${checkpoint?.lsn} past the failing change`,
  );
  const s = await slot(urls.oldUrl, 'stream_unique');
  assert.ok(s && parseLsn(s.confirmed) <= before, `slot acknowledged ${s?.confirmed}`);
  assert.deepEqual(await query(urls.newUrl, 'SELECT id FROM post WHERE id > 100'), []);

  const fixed = convert('stream_unique', urls, { IMAGO_TEST_DEDUPE: '1' });
  try {
    await waitUntil(
      'the fixed stream to apply both rows',
      async () =>
        (await query(urls.newUrl, 'SELECT id FROM post WHERE id > 100')).length === 2 ? true : undefined,
      { timeoutMs: 60_000 },
    );
  } finally {
    await fixed.stop();
  }
  assert.deepEqual(await query(urls.newUrl, 'SELECT id, slug FROM post WHERE id > 100 ORDER BY id'), [
    { id: 101, slug: 'a-5-101' },
    { id: 102, slug: 'a-102-102' },
  ]);
});

test('bulk copy: not-null, check, foreign-key and too-long values name their row too', async () => {
  const cases = [
    {
      name: 'copy_not_null',
      sql: `UPDATE article SET title = NULL WHERE id = 7`,
      target: `CREATE TABLE post (id int PRIMARY KEY, slug text, title text NOT NULL)`,
      kind: /not-null constraint .*title/,
      key: '["7"]',
    },
    {
      name: 'copy_check',
      sql: `UPDATE article SET slug = 'BAD SLUG' WHERE id = 9`,
      target: `CREATE TABLE post (id int PRIMARY KEY, slug text CONSTRAINT post_slug_lower CHECK (slug = lower(slug)), title text)`,
      kind: /check constraint post_slug_lower violated \(CHECK \(\(slug = lower\(slug\)\)\)\)/,
      key: '["9"]',
    },
    {
      name: 'copy_foreign_key',
      sql: '',
      target: `CREATE TABLE known (title text PRIMARY KEY); INSERT INTO known SELECT 'title ' || g FROM generate_series(1, 10) g;
        CREATE TABLE post (id int PRIMARY KEY, slug text, title text CONSTRAINT post_title_fkey REFERENCES known)`,
      kind: /foreign-key constraint post_title_fkey violated .*is not present in table "known"/,
      key: '["11"]',
    },
    {
      // A value its column's type refuses: PostgreSQL names no table, Imago names the batch's.
      name: 'copy_too_long',
      sql: `UPDATE article SET slug = 'a slug far too long' WHERE id = 13`,
      target: `CREATE TABLE post (id int PRIMARY KEY, slug varchar(10), title text)`,
      kind: /refused a row for public\.post during the bulk copy: value too long for type character varying\(10\)/,
      key: '["13"]',
    },
  ];
  for (const c of cases) {
    const urls = await databases(c.name, 20, c.sql, c.target);
    const converter = new Converter({
      sourceUrl: urls.oldUrl,
      targetUrl: urls.newUrl,
      conversion,
      name: c.name,
    });
    try {
      await converter.prepare();
      const err = await converter.copy().then(
        () => assert.fail(`${c.name}: the copy went through`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof RefusedRowError, `${c.name}: ${String(err)}`);
      assert.match(err.message, c.kind, c.name);
      assert.match(
        err.message,
        new RegExp(`produced by article row ${c.key.replace(/[[\]]/g, '\\$&')}`),
        c.name,
      );
      assert.equal(err.targetTable, 'public.post');
    } finally {
      await converter.stop({ dropCapture: true });
    }
  }
});
