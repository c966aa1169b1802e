// The blog example (examples/blog) upgraded the way a user runs it: Prisma-built v1 (quoted
// PascalCase tables, camelCase columns, a composite-key join table, no /healthz, database settings as
// separate variables) to Drizzle-built v2 (snake_case, a derived slug), every part a process of its
// own — v1, `imago ingress`, `imago plan`, `imago start`, `imago report`, `imago switch`, `imago
// status`, `imago finish` and the v2 the driver starts — on the example's own upgrade.yaml, with revoke fencing and
// the runtime test required, under a seeded load of reads and writes through the ingress for the
// whole run. No request may fail, no acknowledged write may be missing from v2 afterwards, and no
// client may see v1 after any client saw v2.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import pg from 'pg';
import { request } from 'undici';
import { parseDocument } from 'yaml';
import { startCluster, createDatabase } from '../src/universe/cluster.js';
import { freePort } from '../src/universe/ports.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { mixedAnswers, startLoad } from '../src/bench/load.js';
import { TS_LOADER } from '../src/loader/args.js';
import { root, startDriver, stopProvisionedApps } from './fixtures/driver-run.js';
import { seedBlog } from '../examples/blog/seed.js';
import { createBlogAppRole, BLOG_APP_ROLE } from '../examples/blog/app-role.js';
import { settingsEnv } from '../examples/blog/db.js';
import { VERSION_HEADER } from '../examples/blog/app.js';
import { blogWorkload } from '../examples/blog/workload.js';
import { postSlug } from '../examples/blog/slug.js';

const USERS = 100;
const POSTS = 300;
const WORKERS = 4;
const RATE = 60;
const UPGRADE = 'blog_v2';
const example = join(root, 'examples/blog');
const seed = Number(process.env.IMAGO_TEST_SEED ?? randomInt(2 ** 31));

const run = promisify(execFile);
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

interface Running {
  /** The first line matching the pattern given to start(). */
  line: string;
  output: string[];
  stop(): Promise<void>;
}

/** Spawns a long-running process and waits for the output line that says it is up. */
async function start(
  what: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<Running> {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await withDeadline(`${what} to stop`, exit, 15_000).catch(() => child.kill('SIGKILL'));
  };
  cleanups.push(stop);
  const line = new Promise<string>((resolve, reject) => {
    const onLine = (l: string) => {
      output.push(l);
      if (process.env.IMAGO_TEST_VERBOSE) process.stderr.write(`${what}: ${l}\n`);
      if (ready.test(l)) resolve(l);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    void exit.then(() => reject(new Error(`${what} exited before it was up:\n${output.join('\n')}`)));
  });
  return { line: await withDeadline(`${what} to be up`, line, 30_000, output.join('\n')), output, stop };
}

/** `imago <args>` as a process, with the plan's variables in its environment. */
function imago(args: string[], env: Record<string, string>) {
  return run(process.execPath, [join(root, 'bin/imago.js'), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    timeout: 90_000,
  }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
}

const lastJson = (stdout: string) =>
  JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;

/**
 * The example's upgrade.yaml as the user has it, copied into `dir` with what a test must change: its
 * paths made absolute (the copy is elsewhere), its state kept in `dir`, and the latency gate opened
 * (this machine is shared; latency is reported, not gated, here).
 */
function planIn(dir: string): string {
  const doc = parseDocument(readFileSync(join(example, 'upgrade.yaml'), 'utf8'));
  doc.set('conversion', join(example, String(doc.get('conversion'))));
  doc.setIn(['new', 'app', 'cwd'], example);
  doc.set('stateDir', join(dir, 'state'));
  doc.setIn(['runtimeTest', 'gate', 'maxLatencyRatio'], 50);
  const file = join(dir, 'upgrade.yaml');
  writeFileSync(file, doc.toString());
  return file;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

test('the blog upgrades from Prisma v1 to Drizzle v2 with the imago CLI under load: 0 failed, 0 lost', async (t) => {
  t.diagnostic(`seed ${seed} (IMAGO_TEST_SEED=${seed} draws the same workload)`);
  const dir = mkdtempSync(join(tmpdir(), 'imago-blog-test-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const [oldCluster, newCluster] = await Promise.all([
    startCluster({ name: 'blog-old', ephemeral: true }),
    startCluster({ name: 'blog-new', ephemeral: true }),
  ]);
  cleanups.push(() => Promise.all([oldCluster.stop(), newCluster.stop()]).then(() => {}));
  const oldDb = await createDatabase(oldCluster, 'blog');
  const newDb = await createDatabase(newCluster, 'blog');
  cleanups.push(() => stopProvisionedApps(newDb, UPGRADE));
  const seeded = await seedBlog(oldDb, { users: USERS, posts: POSTS });
  assert.deepEqual(seeded, { users: USERS, posts: POSTS, tags: 8, postTags: seeded.postTags });
  const appSettings = await createBlogAppRole(oldDb);

  // The user's running world: v1 as its own role, one ingress node in front of it.
  const v1 = await start(
    'blog v1',
    [...TS_LOADER, join(example, 'v1/server.ts')],
    { ...settingsEnv(appSettings), PORT: String(await freePort()), HOST: '127.0.0.1' },
    /^blog v1 listening on http:/,
  );
  const v1Url = v1.line.replace(/^.* listening on /, '');
  const token = randomBytes(24).toString('hex');
  const ingress = await start(
    'imago ingress',
    [
      join(root, 'bin/imago.js'),
      'ingress',
      '--old',
      v1Url,
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--control-port',
      String(await freePort()),
      '--state',
      join(dir, 'edge-1.json'),
      '--workers',
      '1',
      '--health-path',
      '/api/health',
      '--json',
    ],
    { IMAGO_INGRESS_TOKEN: token },
    /^\{/,
  );
  const edge = JSON.parse(ingress.line) as { url: string; control: string };

  const plan = planIn(dir);
  const env = {
    BLOG_OLD_DATABASE_URL: oldDb,
    BLOG_NEW_DATABASE_URL: newDb,
    BLOG_OLD_URL: v1Url,
    BLOG_INGRESS_CONTROL: edge.control,
    BLOG_INGRESS_TOKEN: token,
  };

  // The dry run reads every table of the conversion on the old database, named as the conversion
  // spells it (as PostgreSQL stores it: User, not user), and checks the fence.
  const planned = await imago(['plan', plan], env);
  assert.equal(planned.code, 0, planned.stdout + planned.stderr);
  for (const table of ['User', 'Tag', 'Post', 'PostTag'])
    assert.match(planned.stdout, new RegExp(`^  table ${table}: ~\\d+ rows`, 'm'), planned.stdout);
  assert.match(planned.stdout, new RegExp(`fencing: revoke of role ${BLOG_APP_ROLE}\\n`), planned.stdout);

  const workload = blogWorkload({
    seed,
    runId: randomBytes(3).toString('hex'),
    users: USERS,
    posts: POSTS,
    workers: WORKERS,
  });
  const load = startLoad({
    url: edge.url,
    workers: WORKERS,
    rate: RATE,
    next: workload.next,
    versionHeader: VERSION_HEADER,
  });
  let loadStopped = false;
  cleanups.push(async () => {
    if (!loadStopped) await load.stop();
  });
  const driver = startDriver(plan, env);
  cleanups.push(() => driver.kill());

  await driver.line(/runtime-test gate passed/, 90_000);
  const reported = await imago(['report', plan, '--json'], env);
  assert.equal(reported.code, 0, reported.stdout + reported.stderr);
  const report = lastJson(reported.stdout) as {
    endpoints: { endpoint: string; compared: number; mismatched: number }[];
    gate: { pass: boolean };
  };
  assert.equal(report.gate.pass, true, reported.stdout);
  for (const endpoint of ['GET /api/users', 'GET /api/users/:id', 'GET /api/posts', 'GET /api/posts/:id']) {
    const e = report.endpoints.find((x) => x.endpoint === endpoint);
    assert.ok(e && e.compared >= 20, `${endpoint} compared ${e?.compared}`);
    assert.equal(e.mismatched, 0, `${endpoint}: v2 answers as v1 does, writes running meanwhile`);
  }

  const switched = await imago(['switch', plan, '--json'], env);
  assert.equal(switched.code, 0, switched.stdout + switched.stderr);
  assert.equal(lastJson(switched.stdout).switched, true, switched.stdout);
  // v2 takes writes through the ingress (its sequences are past v1's ids).
  await waitUntil(
    'v2 to acknowledge 10 writes through the ingress',
    async () => (load.answers().filter((a) => a.version === '2' && a.write).length >= 10 ? true : undefined),
    { timeoutMs: 30_000 },
  );
  const status = await imago(['status', plan, '--json'], env);
  assert.equal(status.code, 0, status.stdout + status.stderr);
  const upgrade = lastJson(status.stdout) as {
    phase: string;
    lateWrites: number;
    figures?: { conversion?: { copiedRows?: number } };
  };
  assert.equal(upgrade.phase, 'switched', status.stdout);
  assert.equal(upgrade.lateWrites, 0, 'the fence stopped v1 writing');
  assert.ok(
    Number(upgrade.figures?.conversion?.copiedRows) >= USERS + POSTS + seeded.tags + seeded.postTags,
    status.stdout,
  );
  loadStopped = true;
  const observed = await load.stop();
  t.diagnostic(
    `${observed.requests} requests, ${observed.acknowledged.length} writes acknowledged (${observed.acknowledged.filter((w) => w.version === '2').length} by v2)`,
  );
  assert.equal(observed.failed, 0, observed.failures.join('\n'));
  assert.equal(mixedAnswers(observed.answers, '1', '2'), 0, 'no client saw v1 after any saw v2');
  assert.ok(observed.acknowledged.filter((w) => w.version === '1').length >= 20, 'v1 took writes meanwhile');

  const finished = await imago(['finish', plan, '--json'], env);
  assert.equal(finished.code, 0, finished.stdout + finished.stderr);
  assert.equal(
    (await withDeadline('the driver to exit', driver.exit, 30_000)).code,
    0,
    driver.lines.join('\n'),
  );

  assert.deepEqual(await workload.missingWrites(newDb, observed.acknowledged), []);
  // Every post's slug is its title's and id's, whether converted, edited on v1 or written by v2.
  const posts = await query<{ id: number; title: string; slug: string }>(
    newDb,
    'SELECT id, title, slug FROM posts',
  );
  assert.ok(posts.length > POSTS);
  assert.deepEqual(
    posts.filter((p) => p.slug !== postSlug(p.title, p.id)),
    [],
  );
  const first = posts.find((p) => p.id === 1);
  const bySlug = await request(`${edge.url}/api/posts/by-slug/${first?.slug}`);
  assert.equal(bySlug.statusCode, 200);
  assert.equal(((await bySlug.body.json()) as { id: number }).id, 1);
});
