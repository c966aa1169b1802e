// The blog example's two versions over real HTTP on a real cluster: the API the upgrade's runtime
// test compares (the same answers from v1's Prisma tables and v2's Drizzle tables), its error paths,
// its health path, v2's slugs, and the settings it reads from separate variables.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startCluster, createDatabase, type Cluster } from '../src/universe/cluster.js';
import { startBlog, VERSION_HEADER } from '../examples/blog/app.js';
import { settingsFromEnv, settingsFromUrl } from '../examples/blog/db.js';
import { schemaV1 } from '../examples/blog/v1/schema.js';
import { schemaV2 } from '../examples/blog/v2/schema.js';
import type { Served } from '../examples/wiki/http.js';

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

interface Answer {
  status: number;
  version: string;
  json: Record<string, unknown>;
}

async function call(base: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const res = await request(base + path, {
    method: method as 'GET',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
  });
  return {
    status: res.statusCode,
    version: String(res.headers[VERSION_HEADER]),
    json: (await res.body.json()) as Record<string, unknown>,
  };
}

/** An answer without its timestamps (the versions write at different moments). */
function timeless(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(timeless);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => k !== 'createdAt' && k !== 'updatedAt')
        .map(([k, v]) => [k, timeless(v)]),
    );
  return value;
}

/** The same requests for both versions: what each answers, in order. */
async function script(base: string): Promise<{ what: string; status: number; json: unknown }[]> {
  const seen: { what: string; status: number; json: unknown }[] = [];
  const step = async (method: string, path: string, body?: unknown) => {
    const a = await call(base, method, path, body);
    seen.push({ what: `${method} ${path}`, status: a.status, json: timeless(a.json) });
    return a;
  };
  await step('POST', '/api/users', { email: 'zoe@example.com', name: 'Zoë Ångström' });
  await step('POST', '/api/users', { email: 'ann@example.com', name: 'Ann Lee' });
  await step('POST', '/api/users', { email: 'zoe@example.com', name: 'again' });
  await step('POST', '/api/posts', { authorId: 1, title: 'Grüße aus Tōkyō', tags: ['東京', 'b', 'a', 'b'] });
  await step('POST', '/api/posts', { authorId: 2, title: 'Second', content: 'x', published: true });
  await step('POST', '/api/posts', { authorId: 99, title: 'Nobody' });
  await step('PATCH', '/api/posts/1', { content: 'now with content', published: true });
  await step('PATCH', '/api/posts/2', { title: 'Second, renamed', content: null });
  await step('POST', '/api/posts/2/tags', { name: 'a' });
  await step('POST', '/api/posts/2/tags', { name: 'a' });
  await step('POST', '/api/posts/9/tags', { name: 'a' });
  for (const path of ['/api/users', '/api/users?limit=1', '/api/users/2', '/api/posts', '/api/posts/1'])
    await step('GET', path);
  for (const path of ['/api/users/3', '/api/posts/0', '/api/posts/abc', '/api/users?limit=0', '/healthz'])
    await step('GET', path);
  await step('POST', '/api/users', { email: 'not an email', name: 'x' });
  await step('POST', '/api/users', '{"email":');
  await step('POST', '/api/users', { email: 'a@b.c', name: 'a\u0000b' });
  await step('POST', '/api/users', { email: 'a@b.c', name: 'x', role: 'admin' });
  await step('PATCH', '/api/posts/1', { title: '' });
  await step('DELETE', '/api/posts/1');
  return seen;
}

describe('blog example application', () => {
  let cluster: Cluster;
  const blogs: Served[] = [];
  const answers: Record<number, Awaited<ReturnType<typeof script>>> = {};
  before(async () => {
    cluster = await startCluster({ name: 'blog-app-test', ephemeral: true });
  });
  after(async () => {
    for (const b of blogs) await b.close();
    await cluster?.stop();
  });

  for (const schema of [schemaV1, schemaV2]) {
    test(`v${schema.version} answers the API from its own tables`, async () => {
      const database = settingsFromUrl(await createDatabase(cluster, `blog_v${schema.version}`));
      const blog = await startBlog(schema, { database });
      blogs.push(blog);
      const health = await call(blog.url, 'GET', '/api/health');
      assert.deepEqual(health, { status: 200, version: String(schema.version), json: { status: 'ok' } });

      answers[schema.version] = await script(blog.url);
      const post = await call(blog.url, 'GET', '/api/posts/2');
      assert.equal(post.status, 200);
      assert.match(String(post.json.createdAt), ISO_MS);
      assert.ok(String(post.json.updatedAt) >= String(post.json.createdAt));
      assert.deepEqual(post.json.tags, ['a']);
      assert.equal(post.json.title, 'Second, renamed');
      assert.equal(post.json.content, null);
      assert.deepEqual((await call(blog.url, 'GET', '/api/posts/1')).json.tags, ['a', 'b', '東京']);

      const bySlug = await call(blog.url, 'GET', '/api/posts/by-slug/second-renamed-2');
      if (schema.version === 2) {
        assert.equal(bySlug.status, 200, 'a renamed post has the slug of its new title');
        assert.deepEqual(timeless(bySlug.json), timeless(post.json));
        assert.equal((await call(blog.url, 'GET', '/api/posts/by-slug/grusse-aus-tokyo-1')).status, 200);
      } else assert.equal(bySlug.status, 404, 'v1 has no slugs');
    });
  }

  test('both versions answer the same requests alike', () => {
    assert.ok(answers[1] && answers[2], 'both versions ran');
    assert.deepEqual(answers[2], answers[1]);
    // What the script checks is what it should: the refusals are refusals.
    assert.deepEqual(
      answers[1].map((a) => a.status),
      [
        201, 201, 409, 201, 201, 400, 200, 200, 200, 200, 404, 200, 200, 200, 200, 200, 404, 400, 400, 400,
        404, 400, 400, 400, 400, 400, 405,
      ],
    );
    const users = answers[1].find((a) => a.what === 'GET /api/users')?.json as { users: { email: string }[] };
    assert.deepEqual(
      users.users.map((u) => u.email),
      ['ann@example.com', 'zoe@example.com'],
      'newest first',
    );
  });

  test('database settings are read as separate variables, each missing one named', () => {
    assert.throws(
      () => settingsFromEnv({ DB_HOST: 'db', DB_PORT: '5432' }),
      /^Error: set DB_USERNAME, DB_PASSWORD, DB_NAME$/,
    );
    assert.throws(
      () =>
        settingsFromEnv({ DB_HOST: 'db', DB_PORT: 'x', DB_USERNAME: 'u', DB_PASSWORD: 'p', DB_NAME: 'n' }),
      /DB_PORT must be a port number, not "x"/,
    );
    assert.deepEqual(
      settingsFromEnv({
        DB_HOST: 'db',
        DB_PORT: '6543',
        DB_USERNAME: 'u',
        DB_PASSWORD: 'p@ss',
        DB_NAME: 'n',
      }),
      { host: 'db', port: 6543, user: 'u', password: 'p@ss', database: 'n' },
    );
  });
});
