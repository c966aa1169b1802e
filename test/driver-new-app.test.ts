// The new app as `imago start` provisions it, for apps as they are rather than as Imago's wiki is:
// one given by URL without /healthz (its own health path and status), and one that takes its
// database settings as separate variables (DB_HOST, DB_PORT…). The driver runs as a user runs it,
// killed right after provisioning.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase } from '../src/universe/cluster.js';
import { withDeadline } from '../src/deadline.js';
import { Journal } from '../src/driver/index.js';
import { root, startDriver, stopProvisionedApps } from './fixtures/driver-run.js';
import { oldWorld, type OldWorld } from './switchover-fixture.js';

let world: OldWorld;
let dir: string;
const upgrades: { name: string; db: string }[] = [];

before(async () => {
  world = await oldWorld({ pages: 10, revisions: 1, nodes: 1 });
  dir = mkdtempSync(join(tmpdir(), 'imago-new-app-test-'));
});

after(async () => {
  for (const u of upgrades) await stopProvisionedApps(u.db, u.name);
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A plan for the world's old universe with `newApp` as the new universe's app. */
async function planFor(name: string, newApp: unknown): Promise<{ file: string; db: string }> {
  const db = await createDatabase(world.newCluster, name);
  upgrades.push({ name, db });
  const file = join(dir, `${name}.yaml`);
  const plan = {
    name,
    old: { database: world.oldDb, app: { url: world.v1.url } },
    new: { database: db, app: newApp },
    conversion: join(root, 'examples/wiki/conversion.ts'),
    ingress: { nodes: world.specs },
    stateDir: join(dir, 'state'),
  };
  writeFileSync(file, JSON.stringify(plan));
  return { file, db };
}

/** Runs `imago start` until it exits (it kills itself right after journaling `crashAfter`). */
async function drive(file: string, crashAfter?: string) {
  const run = startDriver(file, crashAfter ? { IMAGO_CRASH_AFTER: crashAfter } : {});
  const exit = await withDeadline('imago start to exit', run.exit, 90_000);
  return { ...exit, output: run.lines.join('\n') };
}

async function provisioned(db: string, name: string): Promise<Record<string, unknown> | undefined> {
  const journal = await Journal.open(db, name);
  try {
    return (await journal.events()).findLast((e) => e.event === 'provisioned')?.detail;
  } finally {
    await journal.close();
  }
}

test('an app given by URL without /healthz: its healthPath and healthStatus are what the driver checks', async () => {
  const asked: string[] = [];
  const app: Server = createServer((req, res) => {
    asked.push(req.url ?? '');
    res.statusCode = req.url === '/status' ? 204 : 404;
    res.end();
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  try {
    const { file, db } = await planFor('shop_url', { url, healthPath: '/status', healthStatus: 204 });
    const run = await drive(file, 'provisioned');
    assert.equal(run.signal, 'SIGKILL', run.output);
    assert.deepEqual(await provisioned(db, 'shop_url'), { url });
    assert.ok(asked.includes('/status') && !asked.includes('/healthz'), asked.join(' '));

    // The same app with a status it does not answer: refused, saying what the check saw.
    const wrong = await planFor('shop_url_wrong', { url, healthPath: '/status', healthStatus: '200' });
    const refused = await drive(wrong.file);
    assert.equal(refused.code, 2, refused.output);
    assert.match(
      refused.output,
      /the new app does not answer its health check: GET http:\/\/127\.0\.0\.1:\d+\/status answered 204 \(healthy: 200\)/,
    );
  } finally {
    app.close();
  }
});

test('an app that takes DB_HOST, DB_PORT, DB_USERNAME, DB_PASSWORD, DB_NAME gets each part', async () => {
  const envFile = join(dir, 'parts-env.json');
  const server = join(dir, 'parts-app.mjs');
  // Connects with the parts it was given (as an ORM configured by variables does), and only then
  // answers /ready; it has no /healthz.
  writeFileSync(
    server,
    `import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import pg from ${JSON.stringify(join(root, 'node_modules/pg/lib/index.js'))};
const e = process.env;
writeFileSync(${JSON.stringify(envFile)}, JSON.stringify(e));
const client = new pg.Client({ host: e.DB_HOST, port: Number(e.DB_PORT), user: e.DB_USERNAME, password: e.DB_PASSWORD, database: e.DB_NAME });
await client.connect();
const old = new pg.Client({ host: e.OLD_DB_HOST, port: Number(e.OLD_DB_PORT), user: e.OLD_DB_USER, password: e.OLD_DB_PASSWORD, database: e.OLD_DB_NAME });
await old.connect();
await old.end();
createServer((req, res) => { res.statusCode = req.url === '/ready' ? 204 : 404; res.end(); })
  .listen(Number(e.PORT), e.HOST);
`,
  );
  const { file, db } = await planFor('shop_parts', {
    command: [process.execPath, server],
    env: {
      DB_HOST: '{{new.database.host}}',
      DB_PORT: '{{new.database.port}}',
      DB_USERNAME: '{{new.database.username}}',
      DB_PASSWORD: '{{new.database.password}}',
      DB_NAME: '{{new.database.name}}',
      OLD_DB_HOST: '{{old.database.host}}',
      OLD_DB_PORT: '{{old.database.port}}',
      OLD_DB_USER: '{{old.database.user}}',
      OLD_DB_PASSWORD: '{{old.database.password}}',
      OLD_DB_NAME: '{{old.database.database}}',
      DATABASE_URL: '{{new.database}}',
    },
    healthPath: '/ready',
  });
  const run = await drive(file, 'provisioned');
  assert.equal(run.signal, 'SIGKILL', run.output);
  assert.ok(await provisioned(db, 'shop_parts'), run.output);
  const env = JSON.parse(readFileSync(envFile, 'utf8')) as Record<string, string>;
  const url = new URL(db);
  assert.deepEqual(
    [env.DB_HOST, env.DB_PORT, env.DB_USERNAME, env.DB_PASSWORD, env.DB_NAME, env.DATABASE_URL],
    [url.hostname, url.port, url.username, url.password, 'shop_parts', db],
  );
  assert.equal(env.OLD_DB_NAME, 'wiki');
  // The driver's own output never shows a password it handed over.
  assert.ok(!run.output.includes(url.password), run.output);
  const client = new pg.Client({ connectionString: db });
  await client.connect();
  await client.end();
});
