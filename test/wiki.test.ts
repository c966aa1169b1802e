/**
 * The demo wiki, both versions, over real HTTP against a real PostgreSQL cluster: the API contract
 * Imago's runtime test compares, its error paths, concurrent edits, seeding and the standalone process.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { request } from 'undici';
import { startCluster, createDatabase, type Cluster } from '../src/universe/cluster.js';
import type { RunningWiki, WikiOptions } from '../examples/wiki/app.js';
import { startWiki as startV1 } from '../examples/wiki/v1/server.js';
import { startWiki as startV2 } from '../examples/wiki/v2/server.js';
import { seedWiki } from '../examples/wiki/seed.js';
import { TS_LOADER } from '../src/loader/args.js';

const ISO_US = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown>;
}

async function call(base: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const res = await request(base + path, {
    method: method as 'GET',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: JSON.parse(text) as Record<string, unknown> };
}

const page = (title: string) => `/wiki/${encodeURIComponent(title)}`;

/** Renames a table the store reads, so its queries fail like a broken database would. */
const brokenTable: Record<number, string> = { 1: 'cur', 2: 'page' };

describe('wiki demo application', () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ name: 'wiki-test', ephemeral: true });
  });
  after(async () => {
    await cluster?.stop();
  });

  const versions: [number, (o: WikiOptions) => Promise<RunningWiki>][] = [
    [1, startV1],
    [2, startV2],
  ];
  for (const [version, startWiki] of versions) {
    describe(`v${version}`, () => {
      let wiki: RunningWiki;
      let databaseUrl: string;
      const get = (path: string) => call(wiki.url, 'GET', path);
      before(async () => {
        databaseUrl = await createDatabase(cluster, `wiki_v${version}`);
        wiki = await startWiki({ databaseUrl });
      });
      after(async () => {
        await wiki?.close();
      });

      test('health check names the version on every response', async () => {
        const health = await get('/healthz');
        assert.equal(health.status, 200);
        assert.deepEqual(health.json, { ok: true, version });
        assert.equal(health.headers['x-wiki-version'], String(version));
        assert.equal((await get('/nope')).headers['x-wiki-version'], String(version));
      });

      test('create, read, edit twice, history newest first', async () => {
        const title = 'Grüße_東京';
        const created = await call(wiki.url, 'PUT', page(title), {
          text: 'first',
          user: 'ann',
          comment: 'new',
        });
        assert.equal(created.status, 201);
        assert.equal(created.json.title, title);
        assert.match(String(created.json.timestamp), ISO_US);

        const read = await get(page(title));
        assert.equal(read.status, 200);
        const expected: Record<string, unknown> = {
          title,
          text: 'first',
          timestamp: created.json.timestamp,
          user: 'ann',
          comment: 'new',
        };
        if (version === 2) expected.length = 5;
        assert.deepEqual(read.json, expected);

        const text = 'Grüße – 東京 ✓';
        const edit1 = await call(wiki.url, 'POST', page(title), { text: 'second', user: 'bob' });
        const edit2 = await call(wiki.url, 'POST', page(title), { text, comment: 'third' });
        assert.equal(edit1.status, 200);
        assert.equal(edit2.status, 200);
        assert.deepEqual(Object.keys(edit2.json).sort(), ['timestamp', 'title']);
        assert.ok(String(edit2.json.timestamp) > String(edit1.json.timestamp));

        const after = await get(page(title));
        assert.equal(after.json.text, text);
        assert.equal(after.json.timestamp, edit2.json.timestamp);
        assert.equal(after.json.user, '');
        assert.equal(after.json.comment, 'third');
        if (version === 2) assert.equal(after.json.length, Buffer.byteLength(text, 'utf8'));
        else assert.equal('length' in after.json, false);

        const history = await get(`${page(title)}/history`);
        assert.equal(history.status, 200);
        assert.deepEqual(history.json, {
          title,
          revisions: [
            { timestamp: edit2.json.timestamp, user: '', comment: 'third' },
            { timestamp: edit1.json.timestamp, user: 'bob', comment: '' },
            { timestamp: created.json.timestamp, user: 'ann', comment: 'new' },
          ],
        });
      });

      test('recent changes across pages, newest first, limited', async () => {
        const a = await call(wiki.url, 'PUT', page('Recent_A'), { text: 'a', user: 'u1', comment: 'ca' });
        const b = await call(wiki.url, 'PUT', page('Recent_B'), { text: 'b', user: 'u2', comment: 'cb' });
        const a2 = await call(wiki.url, 'POST', page('Recent_A'), { text: 'a2', user: 'u3', comment: 'ca2' });
        const recent = await get('/recent?limit=3');
        assert.equal(recent.status, 200);
        assert.deepEqual(recent.json.changes, [
          { title: 'Recent_A', timestamp: a2.json.timestamp, user: 'u3', comment: 'ca2' },
          { title: 'Recent_B', timestamp: b.json.timestamp, user: 'u2', comment: 'cb' },
          { title: 'Recent_A', timestamp: a.json.timestamp, user: 'u1', comment: 'ca' },
        ]);
        const all = (await get('/recent')).json.changes as { timestamp: string }[];
        assert.equal(all.length, 6); // the 3 revisions of the page above, then these 3
        const sorted = [...all].sort((x, y) => (x.timestamp < y.timestamp ? 1 : -1));
        assert.deepEqual(all, sorted);
        assert.equal((await get('/recent?limit=1000')).status, 200);
        assert.equal((await get('/recent?limit=0')).status, 400);
        assert.equal((await get('/recent?limit=abc')).status, 400);
      });

      test('error paths: 404, 409, 400, 413, 405', async () => {
        assert.equal((await get(page('Missing'))).status, 404);
        assert.equal((await get(`${page('Missing')}/history`)).status, 404);
        const missingEdit = await call(wiki.url, 'POST', page('Missing'), { text: 'x' });
        assert.equal(missingEdit.status, 404);
        assert.equal(typeof missingEdit.json.error, 'string');
        assert.equal((await get('/no/such/route')).status, 404);
        assert.equal((await get('/wiki/a/b/c')).status, 404);

        assert.equal((await call(wiki.url, 'PUT', page('Dup'), { text: 'x' })).status, 201);
        assert.equal((await call(wiki.url, 'PUT', page('Dup'), { text: 'y' })).status, 409);
        assert.equal((await get(page('Dup'))).json.text, 'x');

        assert.equal((await get('/wiki/')).status, 400);
        assert.equal((await get(page('x'.repeat(256)))).status, 400);
        assert.equal((await call(wiki.url, 'PUT', page('東'.repeat(255)), { text: 'ok' })).status, 201);
        assert.equal((await get('/wiki/%E0%A4%A')).status, 400);
        assert.equal((await call(wiki.url, 'PUT', page('Bad'), '{"text":')).status, 400);
        assert.equal((await call(wiki.url, 'PUT', page('Bad'), { text: 3 })).status, 400);
        assert.equal((await call(wiki.url, 'PUT', page('Bad'), {})).status, 400);
        assert.equal((await call(wiki.url, 'PUT', page('Bad'), { text: 'a\u0000b' })).status, 400);
        assert.equal((await get(page('Bad'))).status, 404);

        const big = { text: 'x'.repeat(1024 * 1024) };
        const tooBig = await call(wiki.url, 'PUT', page('Big'), big);
        assert.equal(tooBig.status, 413);
        assert.equal(tooBig.headers['x-wiki-version'], String(version));
        // Without Content-Length (chunked), the limit is enforced while reading.
        const chunked = await request(`${wiki.url}${page('Big')}`, {
          method: 'PUT',
          body: Readable.from(Array.from({ length: 20 }, () => Buffer.alloc(64 * 1024, 'x'))),
        });
        await chunked.body.dump();
        assert.equal(chunked.statusCode, 413);
        assert.equal((await get(page('Big'))).status, 404);

        const wrong = await call(wiki.url, 'DELETE', page('Dup'));
        assert.equal(wrong.status, 405);
        assert.equal(wrong.headers.allow, 'GET, PUT, POST');
        assert.equal((await call(wiki.url, 'POST', '/recent', {})).status, 405);
      });

      test('20 concurrent edits of one page all land', async () => {
        assert.equal((await call(wiki.url, 'PUT', page('Busy'), { text: 'v0' })).status, 201);
        const edits = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            call(wiki.url, 'POST', page('Busy'), { text: `v${i + 1}`, comment: `edit ${i + 1}` }),
          ),
        );
        assert.deepEqual(
          edits.map((e) => e.status),
          edits.map(() => 200),
        );
        const history = await get(`${page('Busy')}/history`);
        const revisions = history.json.revisions as { timestamp: string; comment: string }[];
        assert.equal(revisions.length, 21);
        assert.equal(new Set(revisions.map((r) => r.timestamp)).size, 21);
        // The page shows the edit that committed last, i.e. the newest revision.
        const newest = edits.find((e) => e.json.timestamp === revisions[0]?.timestamp);
        const current = await get(page('Busy'));
        assert.equal(current.json.comment, revisions[0]?.comment);
        assert.equal(current.json.timestamp, newest?.json.timestamp);
      });

      test('database errors answer 500 and the server keeps serving', async () => {
        const table = brokenTable[version] ?? '';
        const admin = new pg.Client({ connectionString: databaseUrl });
        await admin.connect();
        try {
          await admin.query(`ALTER TABLE ${table} RENAME TO ${table}_hidden`);
          const failed = await get(page('Dup'));
          assert.equal(failed.status, 500);
          assert.deepEqual(failed.json, { error: 'internal error' });
          assert.equal((await get('/healthz')).status, 200);
        } finally {
          await admin.query(`ALTER TABLE IF EXISTS ${table}_hidden RENAME TO ${table}`);
          await admin.end();
        }
        assert.equal((await get(page('Dup'))).status, 200);
      });
    });
  }

  test('seeding 200 pages × 3 revisions', async () => {
    const databaseUrl = await createDatabase(cluster, 'wiki_seed');
    assert.deepEqual(await seedWiki(databaseUrl, { pages: 200, revisionsPerPage: 3 }), {
      cur: 200,
      old: 400,
    });
    const wiki = await startV1({ databaseUrl });
    try {
      const history = await call(wiki.url, 'GET', `${page('Page_10')}/history`);
      const revisions = history.json.revisions as { timestamp: string; comment: string }[];
      assert.deepEqual(
        revisions.map((r) => r.comment),
        ['revision 3', 'revision 2', 'revision 1'],
      );
      const current = await call(wiki.url, 'GET', page('Page_10'));
      assert.match(String(current.json.text), /^Grüße – 東京\. Revision 3 of Page_10\./);
      const recent = (await call(wiki.url, 'GET', '/recent?limit=2')).json.changes;
      assert.deepEqual(
        (recent as { title: string }[]).map((c) => c.title),
        ['Page_200', 'Page_199'],
      );
    } finally {
      await wiki.close();
    }
  });

  test('runs as a standalone process and exits 0 on SIGTERM', async () => {
    const databaseUrl = await createDatabase(cluster, 'wiki_process');
    const script = fileURLToPath(new URL('../examples/wiki/v1/server.ts', import.meta.url));
    const child = spawn(process.execPath, [...TS_LOADER, script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, DATABASE_URL: databaseUrl, PORT: '0' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error('no listening line within 15 s')), 15_000);
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) {
            clearTimeout(deadline);
            resolve(out.split('\n')[0] ?? '');
          }
        });
        child.once('exit', () => reject(new Error(`exited before listening: ${out}`)));
      });
      const m = /^wiki v1 listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      assert.ok(m?.[1], `unexpected first line: ${line}`);
      assert.deepEqual((await call(m[1], 'GET', '/healthz')).json, { ok: true, version: 1 });
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
