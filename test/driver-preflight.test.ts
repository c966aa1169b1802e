// Problems found before anything starts (issue 21, item 6): a source table that cannot be captured (no
// primary key, no replica identity) used to be refused only when the capture created its publication,
// after the new app had been started, which the refusal left running; `imago plan` did not see it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { createDatabase } from '../src/universe/cluster.js';
import { withDeadline } from '../src/deadline.js';
import { Journal } from '../src/driver/index.js';
import { root, startDriver, stopProvisionedApps } from './fixtures/driver-run.js';
import { oldWorld, type OldWorld } from './switchover-fixture.js';

const run = promisify(execFile);
let world: OldWorld;
let dir: string;
let newDb: string;
const NAME = 'keyless';
const TARGET_NAME = 'keyless_target';
const CREATED_NAME = 'created_keyless';
let targetDb = '';
let createdDb = '';

before(async () => {
  world = await oldWorld({ pages: 5, revisions: 1, nodes: 1 });
  dir = mkdtempSync(join(tmpdir(), 'imago-preflight-test-'));
  newDb = await createDatabase(world.newCluster, NAME);
  const client = new pg.Client(world.oldDb);
  await client.connect();
  // As ORMs' log tables often are: no key at all.
  await client.query(`CREATE TABLE audit_log (at timestamptz NOT NULL DEFAULT now(), what text)`);
  await client.query(`INSERT INTO audit_log (what) VALUES ('login'), ('logout')`);
  await client.end();
  await setUpTargets();
});

after(async () => {
  await stopProvisionedApps(newDb, NAME);
  if (targetDb) await stopProvisionedApps(targetDb, TARGET_NAME);
  if (createdDb) await stopProvisionedApps(createdDb, CREATED_NAME);
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A plan whose new app, if it were ever started, leaves `marker` behind before it answers. */
function planFile(marker: string, capture?: { replicaIdentityFull: string[] }): string {
  const conversion = join(dir, 'conversion.mts');
  writeFileSync(
    conversion,
    `import { defineConversion, identity } from ${JSON.stringify(join(root, 'src/conversion/api.js'))};
export default defineConversion({ tables: { audit_log: identity() } });
`,
  );
  const app = join(dir, 'app.mjs');
  writeFileSync(
    app,
    `import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
writeFileSync(${JSON.stringify(marker)}, String(process.pid));
createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), process.env.HOST);
`,
  );
  const file = join(dir, `${NAME}.yaml`);
  const plan = {
    name: NAME,
    old: { database: world.oldDb, app: { url: world.v1.url } },
    new: { database: newDb, app: { command: [process.execPath, app] } },
    conversion,
    ingress: { nodes: world.specs },
    stateDir: join(dir, 'state'),
    ...(capture ? { capture } : {}),
  };
  writeFileSync(file, JSON.stringify(plan));
  return file;
}

const refusal =
  /table public\.audit_log has no primary key or replica identity, so its updates and deletes cannot be captured/;

test('imago plan names a source table that cannot be captured, with the fix', async () => {
  const file = planFile(join(dir, 'never-started-by-plan'));
  const failed = await run(process.execPath, [join(root, 'bin/imago.js'), 'plan', file], { cwd: root }).then(
    () => assert.fail('imago plan succeeded'),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  assert.equal(failed.code, 1, failed.stdout + failed.stderr);
  assert.match(failed.stdout, refusal);
  assert.match(failed.stdout, /ALTER TABLE "public"\."audit_log" REPLICA IDENTITY FULL/);
});

test('imago start refuses it before the new app is started', async () => {
  const marker = join(dir, 'new-app-started');
  const driver = startDriver(planFile(marker));
  const exit = await withDeadline('imago start to exit', driver.exit, 90_000);
  const output = driver.lines.join('\n');
  assert.equal(exit.code, 2, output);
  assert.match(output, refusal);
  assert.doesNotMatch(output, /internal error|\n\s+at .*:\d+:\d+\)?$/m); // no stack trace
  // The journal is the driver's own record of what it started: no app was ever spawned.
  const journal = await Journal.open(newDb, NAME);
  try {
    const events = (await journal.events()).map((e) => e.event);
    assert.ok(!events.includes('app-starting') && !events.includes('provisioned'), events.join(' '));
  } finally {
    await journal.close();
  }
  assert.equal(existsSync(marker), false, 'the new app was started');
});

test("with the plan's consent to REPLICA IDENTITY FULL, the table is not refused (nor altered by the plan)", async () => {
  const file = planFile(join(dir, 'never-started-by-plan-3'), { replicaIdentityFull: ['audit_log'] });
  const planned = await run(process.execPath, [join(root, 'bin/imago.js'), 'plan', file, '--json'], {
    cwd: root,
  });
  const result = JSON.parse(planned.stdout.trim().split('\n').at(-1) ?? '{}') as {
    problems: string[];
    warnings: string[];
  };
  assert.deepEqual(result.problems, []);
  // The new app (started by imago start) has not created its table yet.
  assert.deepEqual(result.warnings, [
    'target table public.audit_log is not in the new database yet: the new app must create it when it starts (imago start checks it then, before the copy)',
  ]);
  const client = new pg.Client(world.oldDb);
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT relreplident FROM pg_class WHERE oid = 'audit_log'::regclass`,
    );
    assert.deepEqual(rows, [{ relreplident: 'd' }]);
  } finally {
    await client.end();
  }
});

// The new database's side (issue 21, item 6): `imago plan` did not look at it, so a target without a
// primary key was found after four tables were copied, and a column that narrows (timestamp(6) into
// timestamp(3)) only showed as 1 ms differences in the runtime test.

/** The old tables and the new databases of the target cases (called from the one before hook). */
async function setUpTargets(): Promise<void> {
  targetDb = await createDatabase(world.newCluster, TARGET_NAME);
  createdDb = await createDatabase(world.newCluster, CREATED_NAME);
  const old = new pg.Client(world.oldDb);
  await old.connect();
  await old.query(`CREATE TABLE note (id bigint PRIMARY KEY, body text NOT NULL, at timestamp NOT NULL DEFAULT now(), score numeric(12, 4));
    INSERT INTO note (id, body) VALUES (1, 'a note'), (2, 'another');
    CREATE TABLE "Memo" (id int PRIMARY KEY, "createdAt" timestamptz NOT NULL DEFAULT now());
    INSERT INTO "Memo" (id) VALUES (1);`);
  await old.end();
  const target = new pg.Client(targetDb);
  await target.connect();
  // Every narrowing kind at once, and no primary key.
  await target.query(`CREATE TABLE note (id int NOT NULL, body varchar(10) NOT NULL, at timestamp(3) NOT NULL, score numeric(6, 2));
    CREATE TABLE memo (id int PRIMARY KEY, created_at timestamptz(0) NOT NULL);`);
  await target.end();
}

/** A plan converting note (identity) and "Memo" (into memo, snake_case), whose new app runs `appCode`. */
function targetPlan(name: string, db: string, appCode: string): string {
  const conversion = join(dir, `${name}.conversion.mts`);
  writeFileSync(
    conversion,
    `import { defineConversion, identity } from ${JSON.stringify(join(root, 'src/conversion/api.js'))};
export default defineConversion({
  tables: {
    note: identity(),
    Memo: { transform: (row) => [{ table: 'memo', row: { id: row.id, created_at: row.createdAt } }] },
  },
});
`,
  );
  const app = join(dir, `${name}.app.mjs`);
  writeFileSync(app, appCode);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    JSON.stringify({
      name,
      old: { database: world.oldDb, app: { url: world.v1.url } },
      new: { database: db, app: { command: [process.execPath, app] } },
      conversion,
      ingress: { nodes: world.specs },
      stateDir: join(dir, 'state'),
    }),
  );
  return file;
}

/** The app leaves `marker` (its pid) behind, runs `sql` on its database if given, then answers. */
function appCode(marker: string, sql?: string): string {
  return `import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
${sql ? `import pg from ${JSON.stringify(join(root, 'node_modules/pg/lib/index.js'))};` : ''}
writeFileSync(${JSON.stringify(marker)}, String(process.pid));
${sql ? `const c = new pg.Client(process.env.DATABASE_URL); await c.connect(); await c.query(${JSON.stringify(sql)}); await c.end();` : ''}
createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), process.env.HOST);
`;
}

test('imago plan checks the new database: a target without a primary key, and every column that narrows', async () => {
  const file = targetPlan(TARGET_NAME, targetDb, appCode(join(dir, 'never-started-by-plan-2')));
  const failed = await run(process.execPath, [join(root, 'bin/imago.js'), 'plan', file, '--json'], {
    cwd: root,
  }).then(
    () => assert.fail('imago plan succeeded'),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  assert.equal(failed.code, 1, failed.stdout + failed.stderr);
  // --json: the human lines on stderr, the result on stdout.
  assert.match(
    failed.stderr,
    /problem: target table public\.note has no primary key; the copy and the stream upsert by primary key/,
  );
  const result = JSON.parse(failed.stdout.trim().split('\n').at(-1) ?? '{}') as {
    problems: string[];
    warnings: string[];
  };
  assert.deepEqual(
    result.problems.filter((p) => !p.startsWith('ingress')),
    [
      'target table public.note has no primary key; the copy and the stream upsert by primary key; add one to the new schema',
    ],
  );
  assert.deepEqual(result.warnings, [
    "public.note.id (bigint) → public.note.id (integer) refuses values outside integer's range (the conversion stops at such a row)",
    'public.note.body (text) → public.note.body (character varying(10)) refuses values longer than 10 characters (the conversion stops at such a row)',
    'public.note.at (timestamp without time zone) → public.note.at (timestamp(3) without time zone) rounds to 3 fractional digits of a second',
    'public.note.score (numeric(12,4)) → public.note.score (numeric(6,2)) rounds to 2 decimal places and refuses values of more than 4 integer digits',
    // Mapped across naming styles: "createdAt" into created_at.
    'public.Memo.createdAt (timestamp with time zone) → public.memo.created_at (timestamp(0) with time zone) rounds to whole seconds',
  ]);
  for (const w of result.warnings) assert.ok(failed.stderr.includes(`warning: ${w}`), w);
});

test('imago start refuses a target without a primary key before the new app is started', async () => {
  const marker = join(dir, 'target-app-started');
  const driver = startDriver(targetPlan(TARGET_NAME, targetDb, appCode(marker)));
  const exit = await withDeadline('imago start to exit', driver.exit, 90_000);
  const output = driver.lines.join('\n');
  assert.equal(exit.code, 2, output);
  assert.match(output, /target table public\.note has no primary key/);
  assert.doesNotMatch(output, /internal error|\n\s+at .*:\d+:\d+\)?$/m);
  assert.equal(existsSync(marker), false, 'the new app was started');
});

test('a target the new app creates at start is checked once it is up, before the copy; the app is stopped', async () => {
  const marker = join(dir, 'creating-app-started');
  const code = appCode(
    marker,
    'CREATE TABLE IF NOT EXISTS note (id bigint PRIMARY KEY, body text NOT NULL, at timestamp NOT NULL, score numeric(12, 4)); CREATE TABLE IF NOT EXISTS memo (id int, created_at timestamptz)',
  );
  const file = targetPlan(
    CREATED_NAME,
    createdDb,
    code.replace('process.env.DATABASE_URL', JSON.stringify(createdDb)),
  );
  const driver = startDriver(file);
  const exit = await withDeadline('imago start to exit', driver.exit, 90_000);
  const output = driver.lines.join('\n');
  assert.equal(exit.code, 2, output);
  assert.match(output, /target table public\.memo has no primary key/);
  assert.doesNotMatch(output, /internal error|\n\s+at .*:\d+:\d+\)?$/m);
  // It was started (its schema could not be checked before), and it is not left running.
  assert.equal(existsSync(marker), true, 'the new app never started');
  const pid = Number(readFileSync(marker, 'utf8'));
  assert.throws(() => process.kill(pid, 0), /ESRCH/, `the new app (pid ${pid}) is still running`);
  const journal = await Journal.open(createdDb, CREATED_NAME);
  try {
    const events = (await journal.events()).map((e) => e.event);
    assert.ok(!events.includes('copying'), events.join(' '));
  } finally {
    await journal.close();
  }
});
