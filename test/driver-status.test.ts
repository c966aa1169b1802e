// `imago status` as users run it: after a driver was killed and started again, the copy's figures are
// the conversion's (read from its checkpoint), not those of the process that happens to run now; and
// piped into a reader that closes early (`imago status | head`), it ends quietly, as Unix tools do.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase } from '../src/universe/cluster.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { Journal } from '../src/driver/index.js';
import {
  root,
  runImago,
  startDriver,
  stopProvisionedApps,
  wikiUpgradeSpec,
  type DriverRun,
} from './fixtures/driver-run.js';
import { oldWorld, type OldWorld } from './switchover-fixture.js';

const NAME = 'wiki_status';
let world: OldWorld;
let dir: string;
let db: string;
let file: string;
let driver: DriverRun | undefined;

before(async () => {
  world = await oldWorld({ pages: 40, revisions: 2, nodes: 1 });
  dir = mkdtempSync(join(tmpdir(), 'imago-status-test-'));
  db = await createDatabase(world.newCluster, NAME);
  file = join(dir, 'plan.yaml');
  writeFileSync(file, JSON.stringify({ ...wikiUpgradeSpec(world, db, NAME), stateDir: join(dir, 'state') }));
});

after(async () => {
  await driver?.kill();
  await stopProvisionedApps(db, NAME);
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `imago status <plan>`, with `--json` when asked; exit code and both outputs. */
function status(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runImago(['status', file, ...args], 60_000);
}

async function sourceRows(): Promise<number> {
  const client = new pg.Client({ connectionString: world.oldDb });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      'SELECT ((SELECT count(*) FROM cur) + (SELECT count(*) FROM old))::int AS n',
    );
    return rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
}

test('after a driver killed while streaming is started again, status reports the rows its copy wrote', async () => {
  const killed = startDriver(file, { IMAGO_CRASH_AFTER: 'streaming' });
  assert.equal((await withDeadline('driver killed', killed.exit, 90_000)).signal, 'SIGKILL');
  driver = startDriver(file);
  await driver.line(/is ready/, 90_000);
  // The resumed driver's heartbeat, once it carries conversion figures.
  const journal = await Journal.open(db, NAME);
  try {
    await waitUntil(
      'the resumed driver’s heartbeat',
      async () => ((await journal.status())?.figures.conversion ? true : undefined),
      { timeoutMs: 30_000 },
    );
  } finally {
    await journal.close();
  }
  const expected = await sourceRows();
  assert.ok(expected > 0);
  const human = await status();
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`conversion: ${expected} rows copied`), human.stdout);
  const json = await status('--json');
  const figures = JSON.parse(json.stdout.trim().split('\n').at(-1) ?? '{}').figures.conversion;
  assert.equal(figures.copiedRows, expected);
  assert.ok(figures.convertedRows >= expected, JSON.stringify(figures));
  assert.notEqual(figures.appliedLsn, '0/0');
});

test('status into a reader that has gone ends quietly, with the exit code of a broken pipe', async () => {
  // The reader (this process) closes its end before imago starts: the shell waits for a line first.
  const child = spawn(
    'bash',
    [
      '-c',
      'read -r _ && exec "$0" "$1" status "$2" --tail 50',
      process.execPath,
      join(root, 'bin/imago.js'),
      file,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve) => {
    child.stdout.once('close', () => resolve());
    child.stdout.destroy();
  });
  child.stdin.end('go\n');
  const code = await withDeadline('imago status into a closed pipe', exit, 60_000);
  assert.equal(stderr, '', 'nothing on stderr: no EPIPE, no stack trace');
  assert.equal(code, 141);
});
