// Problems found before anything starts (issue 21, item 6): a source table that cannot be captured (no
// primary key, no replica identity) used to be refused only when the capture created its publication,
// after the new app had been started, which the refusal left running; `imago plan` did not see it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
});

after(async () => {
  await stopProvisionedApps(newDb, NAME);
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A plan whose new app, if it were ever started, leaves `marker` behind before it answers. */
function planFile(marker: string): string {
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
