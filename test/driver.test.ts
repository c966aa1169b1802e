// The driver as users run it (`imago start`, `imago switch`, `imago finish`), killed with SIGKILL in
// each phase — after provisioning, during the copy, while streaming, mid-switch before COMMIT (nodes
// holding, old database fenced) and right after COMMIT — and started again each time. Under load
// through two ingress nodes the whole time: no failed request, every acknowledged write in the new
// database at the end, never an old answer after a new one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from '../src/universe/cluster.js';
import { withDeadline } from '../src/deadline.js';
import { loadPlan } from '../src/plan/index.js';
import { Journal, sendCommand } from '../src/driver/index.js';
import { startDriver, stopProvisionedApps, wikiUpgradeSpec, type DriverRun } from './fixtures/driver-run.js';
import { APP_ROLE, checkInvariant, loadOn, oldWorld, type OldWorld } from './switchover-fixture.js';

const PAGES = 100;
let world: OldWorld;
let dir: string;
let planFile: string;
let newDb: string;

before(async () => {
  world = await oldWorld({ pages: PAGES, revisions: 2, nodes: 2 });
  newDb = await createDatabase(world.newCluster, 'wiki');
  dir = mkdtempSync(join(tmpdir(), 'imago-driver-test-'));
  planFile = join(dir, 'upgrade.yaml');
  // JSON is YAML: the plan the user would write, with absolute paths.
  const plan = {
    ...wikiUpgradeSpec(world, newDb, 'wiki_drv'),
    switchover: {
      maxPauseMs: 3000,
      maxCatchUpLagMs: 1000,
      deadlines: {
        precheckMs: 30000,
        prepareMs: 1000,
        drainMs: 1000,
        fenceMs: 1000,
        catchUpMs: 2000,
        commitMs: 5000,
      },
      fencing: { mode: 'revoke', role: APP_ROLE },
    },
    stateDir: join(dir, 'state'),
  };
  writeFileSync(planFile, JSON.stringify(plan, null, 2));
});

after(async () => {
  await stopProvisionedApps(newDb, 'wiki_drv');
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

function start(crashAfter?: string): DriverRun {
  return startDriver(planFile, crashAfter ? { IMAGO_CRASH_AFTER: crashAfter } : {});
}

async function crashes(crashAfter: string): Promise<void> {
  const run = start(crashAfter);
  const { signal, code } = await withDeadline(`driver killed after ${crashAfter}`, run.exit, 90_000);
  assert.equal(signal, 'SIGKILL', `exit ${code}:\n${run.lines.join('\n')}`);
}

async function phase(): Promise<string | undefined> {
  const journal = await Journal.open(newDb, 'wiki_drv');
  try {
    return (await journal.events(1)).at(-1)?.phase;
  } finally {
    await journal.close();
  }
}

test('a command whose issuer stopped waiting expires instead of running when a driver takes it', async () => {
  const journal = await Journal.open(newDb, 'wiki_expiry');
  try {
    const stale = await journal.issue('switch', {}, 0);
    const live = await journal.issue('switch', {}, 60_000);
    assert.equal((await journal.take())?.id, live, 'the expired one is skipped');
    assert.match(String((await journal.result(stale))?.error), /expired/);
  } finally {
    await journal.close();
  }
});

test('kill -9 in every phase, resume each time, switch, finish: nothing failed, nothing lost, never a mix', async () => {
  const plan = await loadPlan(planFile);
  const load = loadOn(
    world.nodes.map((n) => n.url),
    80,
    PAGES,
  );

  await crashes('provisioned');
  assert.equal(await phase(), 'provisioning');
  await crashes('copying');
  assert.equal(await phase(), 'copying');
  await crashes('streaming');
  assert.equal(await phase(), 'streaming');

  // Mid-switch, before COMMIT: nodes hold, the old database is fenced, the driver dies.
  let run = start('step:catch-up');
  await run.line(/is ready/);
  void sendCommand(plan, 'switch', { timeoutMs: 60_000 }).catch(() => {});
  assert.equal((await withDeadline('driver killed mid-switch', run.exit, 60_000)).signal, 'SIGKILL');
  assert.equal(await phase(), 'switching');
  assert.ok(
    world.nodes.every((n) => n.holding()),
    'the nodes hold while the driver is gone',
  );
  // The restarted driver finds no COMMIT: it aborts, lifts the fence and releases to the old universe.
  run = start('switch-commit');
  await run.line(/is ready/);
  assert.ok(world.nodes.every((n) => !n.holding() && n.route() === 'old'));
  void sendCommand(plan, 'switch', { timeoutMs: 60_000 }).catch(() => {});
  assert.equal((await withDeadline('driver killed after COMMIT', run.exit, 60_000)).signal, 'SIGKILL');
  // COMMIT is in the journal: the restarted driver flips every node to the new universe.
  run = start();
  await run.line(/is switched/);
  assert.ok(world.nodes.every((n) => !n.holding() && n.route() === 'new'));
  const finished = await sendCommand(plan, 'finish', { timeoutMs: 30_000 });
  assert.equal(finished.ok, true, JSON.stringify(finished));
  assert.equal(
    (await withDeadline('driver exit after finish', run.exit, 30_000)).code,
    0,
    run.lines.join('\n'),
  );
  assert.equal(await phase(), 'finished');

  const observed = await load.stop();
  assert.equal(observed.failed, 0, observed.failures.join('\n'));
  const { lost, mixed } = await checkInvariant(observed, { universe: 'new', databaseUrl: newDb });
  assert.deepEqual(lost, []);
  assert.equal(mixed, 0);
  assert.ok(
    observed.answers.some((a) => a.version === '2'),
    'the new universe served after the switch',
  );
});
