// `imago abort`, as users run it: asked of a running driver, and with no driver at all (it was
// killed mid-copy). Either way the upgrade ends aborted with the old universe serving, and nothing of
// it left on the old database: no replication slot (which would hold WAL forever), no publication;
// and the new schema keeps every index (a copy killed with its indexes deferred gets them back).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase } from '../src/universe/cluster.js';
import { withDeadline } from '../src/deadline.js';
import { loadPlan } from '../src/plan/index.js';
import { Journal, sendCommand } from '../src/driver/index.js';
import { deferIndexes, deferredTables } from '../src/conversion/deferred-indexes.js';
import { root, startDriver, stopProvisionedApps, wikiUpgradeSpec } from './fixtures/driver-run.js';
import { oldWorld, type OldWorld } from './switchover-fixture.js';

let world: OldWorld;
let dir: string;
const upgrades: { name: string; db: string }[] = [];

before(async () => {
  world = await oldWorld({ pages: 50, revisions: 2, nodes: 1 });
  dir = mkdtempSync(join(tmpdir(), 'imago-abort-test-'));
});

after(async () => {
  for (const u of upgrades) await stopProvisionedApps(u.db, u.name);
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function planFor(name: string): Promise<{ file: string; db: string }> {
  const db = await createDatabase(world.newCluster, name);
  upgrades.push({ name, db });
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, JSON.stringify({ ...wikiUpgradeSpec(world, db, name), stateDir: join(dir, 'state') }));
  return { file, db };
}

async function lastPhase(db: string, name: string): Promise<string | undefined> {
  const journal = await Journal.open(db, name);
  try {
    return (await journal.events(1)).at(-1)?.phase;
  } finally {
    await journal.close();
  }
}

/** Imago's capture for `name` on the old database: slot and publication names still there. */
async function captureLeft(name: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: world.oldDb });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      `SELECT slot_name AS name FROM pg_replication_slots WHERE slot_name LIKE $1
       UNION ALL SELECT pubname FROM pg_publication WHERE pubname LIKE $1`,
      [`${name}%`],
    );
    return rows.map((r) => r.name);
  } finally {
    await client.end();
  }
}

function imago(command: string, file: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [join(root, 'bin/imago.js'), command, file, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return withDeadline(
    `imago ${command}`,
    new Promise((resolve) => child.once('exit', (code) => resolve({ code, out }))),
    90_000,
  );
}

test('imago abort asked of a running driver: aborted, capture dropped, old universe serving', async () => {
  const { file, db } = await planFor('wiki_abort_live');
  const run = startDriver(file);
  await run.line(/is ready/, 90_000);
  assert.ok((await captureLeft('wiki_abort_live')).length > 0, 'the driver captures while it runs');
  const result = await sendCommand(await loadPlan(file), 'abort', { timeoutMs: 60_000 });
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.equal(
    (await withDeadline('driver exit after abort', run.exit, 30_000)).code,
    0,
    run.lines.join('\n'),
  );
  assert.equal(await lastPhase(db, 'wiki_abort_live'), 'aborted');
  assert.deepEqual(await captureLeft('wiki_abort_live'), []);
  assert.ok(world.nodes.every((n) => n.route() === 'old' && !n.holding()));
});

test('imago abort with no driver (killed mid-copy): aborted from the journal, capture dropped', async () => {
  const { file, db } = await planFor('wiki_abort_dead');
  const run = startDriver(file, { IMAGO_CRASH_AFTER: 'copying' });
  assert.equal((await withDeadline('driver killed mid-copy', run.exit, 90_000)).signal, 'SIGKILL');
  assert.equal(await lastPhase(db, 'wiki_abort_dead'), 'copying');
  assert.ok((await captureLeft('wiki_abort_dead')).length > 0, 'the crash left slot and publication');
  // What a kill during the copy leaves in the new database: a target's indexes deferred.
  const newDb = new pg.Client({ connectionString: db });
  await newDb.connect();
  const indexesOf = async () =>
    (await newDb.query(`SELECT indexname FROM pg_indexes WHERE tablename = 'text' ORDER BY 1`)).rows;
  try {
    const indexes = await indexesOf();
    assert.ok(await deferIndexes(newDb, 'public.text'), 'the empty target text has its indexes deferred');
    assert.deepEqual(await deferredTables(newDb), ['public.text']);
    const status = await imago('status', file);
    assert.equal(status.code, 0, status.out);
    assert.match(status.out, /new database: indexes of public\.text deferred by an unfinished copy/);
    assert.deepEqual(JSON.parse(status.out.trim().split('\n').at(-1) ?? '').deferredIndexes, ['public.text']);

    const aborted = await imago('abort', file);
    assert.equal(aborted.code, 0, aborted.out);
    assert.match(aborted.out, /no driver is running upgrade wiki_abort_dead: aborting it/);
    assert.deepEqual(JSON.parse(aborted.out.trim().split('\n').at(-1) ?? ''), {
      ok: true,
      aborted: true,
      phase: 'aborted',
    });
    assert.equal(await lastPhase(db, 'wiki_abort_dead'), 'aborted');
    assert.deepEqual(await captureLeft('wiki_abort_dead'), []);
    assert.ok(world.nodes.every((n) => n.route() === 'old' && !n.holding()));
    assert.deepEqual(await deferredTables(newDb), []);
    assert.deepEqual(await indexesOf(), indexes);
  } finally {
    await newDb.end();
  }

  // Asked again: nothing left to do, and it says so without failing.
  const again = await imago('abort', file);
  assert.equal(again.code, 0, again.out);
  assert.equal(await lastPhase(db, 'wiki_abort_dead'), 'aborted');
});
