// The runtime-test gate as users meet it: `imago start` with a plan that requires the runtime test,
// reads and edits flowing through two ingress nodes (separate from the driver: they ship what they
// mirror to the driver's collector). A faithful v2 earns `ready` on its own and switches; a v2 with a
// planted regression (the comment of pages whose title ends in 7 lost) is held in `testing`,
// `imago switch` is refused naming the endpoint and the path, and `imago switch --force` switches
// with the gate's reasons in the journal. Neither loses a write or serves a mix.
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createDatabase } from '../src/universe/cluster.js';
import { withDeadline } from '../src/deadline.js';
import { loadPlan } from '../src/plan/index.js';
import { Journal, sendCommand } from '../src/driver/index.js';
import {
  root,
  startDriver,
  stopProvisionedApps,
  wikiUpgradeSpec,
  type DriverRun,
} from './fixtures/driver-run.js';
import { APP_ROLE, checkInvariant, loadOn, oldWorld, type OldWorld } from './switchover-fixture.js';

const PAGES = 60;
const run = promisify(execFile);
const cleanups: (() => Promise<void>)[] = [];

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** An old world, an empty new database and a TypeScript plan requiring the runtime test. */
async function setUp(
  name: string,
  regression: boolean,
  auto = false,
): Promise<{ world: OldWorld; plan: string; newDb: string }> {
  const world = await oldWorld({ pages: PAGES, revisions: 2, nodes: 2 });
  const newDb = await createDatabase(world.newCluster, 'wiki');
  const dir = mkdtempSync(join(tmpdir(), 'imago-gate-test-'));
  cleanups.push(async () => {
    await stopProvisionedApps(newDb, name);
    await world.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // .mts: the temp folder has no package.json saying ESM.
  const plan = join(dir, 'upgrade.mts');
  const spec = {
    ...wikiUpgradeSpec(world, newDb, name, { WIKI_V2_PLANTED_REGRESSION: regression ? '1' : '0' }),
    switchover: {
      maxPauseMs: 3000,
      maxCatchUpLagMs: 1000,
      deadlines: { catchUpMs: 2000, commitMs: 5000 },
      fencing: { mode: 'revoke', role: APP_ROLE },
      auto,
    },
    stateDir: join(dir, 'state'),
  };
  writeFileSync(
    plan,
    `import { defineUpgrade } from ${JSON.stringify(join(root, 'src/plan/index.ts'))};
import { wikiRuntimeTest } from ${JSON.stringify(join(root, 'examples/wiki/runtime-test.ts'))};
export default defineUpgrade({
  ...${JSON.stringify(spec)},
  runtimeTest: {
    ...wikiRuntimeTest,
    required: true,
    // This machine is shared: latency is reported, not gated, here.
    gate: { minComparedPerEndpoint: 15, maxLatencyRatio: 50 },
  },
});
`,
  );
  return { world, plan, newDb };
}

/** The driver started on the plan and in `testing`, with reads and edits through both nodes. */
async function testing(t: TestContext, name: string, regression: boolean, auto = false) {
  const { world, plan, newDb } = await setUp(name, regression, auto);
  const driver = startDriver(plan);
  await driver.line(/collecting mirrored reads/, 90_000);
  const load = loadOn(
    world.nodes.map((n) => n.url),
    80,
    PAGES,
  );
  // Runs when the test ends, failed or not, so that a failed test's driver and load do not run on
  // into the next tests (the world's clean-up comes at the file's end).
  let loadStopped = false;
  t.after(async () => {
    if (!loadStopped) await load.stop().catch(() => {});
    await driver.kill();
  });
  const stop = () => ((loadStopped = true), load.stop());
  return { world, plan, newDb, driver, load: { ...load, stop } };
}

/** The load stopped: no request failed, every acknowledged write is in the new database, no mix. */
async function servedWithoutLoss(load: ReturnType<typeof loadOn>, newDb: string): Promise<void> {
  const observed = await load.stop();
  const { lost, mixed } = await checkInvariant(observed, { universe: 'new', databaseUrl: newDb });
  assert.equal(observed.failed, 0, JSON.stringify(observed.failures.slice(0, 3)));
  assert.deepEqual(lost, []);
  assert.equal(mixed, 0);
}

/** `finish` through the journal, and the driver exits cleanly. */
async function finish(plan: string, driver: DriverRun): Promise<void> {
  await sendCommand(await loadPlan(plan), 'finish', { timeoutMs: 30_000 });
  assert.equal((await withDeadline('driver exit', driver.exit, 30_000)).code, 0, driver.lines.join('\n'));
}

async function events(newDb: string, name: string) {
  const journal = await Journal.open(newDb, name);
  try {
    return await journal.events();
  } finally {
    await journal.close();
  }
}

function imago(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [join(root, 'bin/imago.js'), ...args], { cwd: root, timeout: 90_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
}

test('a faithful new version passes the gate on live traffic and switches: no mismatch, nothing lost', async (t) => {
  const { world, plan, newDb, driver, load } = await testing(t, 'wiki_gate_ok', false);
  await driver.line(/runtime-test gate passed/, 90_000);
  assert.ok(
    (await events(newDb, 'wiki_gate_ok')).some(
      (e) => e.event === 'gate-passed' && e.detail.runtimeTest === 'passed',
    ),
  );

  const status = await imago(['status', plan, '--json']);
  assert.equal(status.code, 0, status.stderr);
  const summary = JSON.parse(status.stdout.trim().split('\n').at(-1) ?? '{}').runtimeTest;
  assert.ok(summary.compared >= 45, `compared ${summary.compared}`);
  assert.equal(summary.mismatched, 0, 'edits run meanwhile, and the barrier keeps answers comparable');

  const switched = await sendCommand(await loadPlan(plan), 'switch', { timeoutMs: 60_000 });
  assert.equal(switched.switched, true, JSON.stringify(switched));
  await servedWithoutLoss(load, newDb);
  const mirroring = await Promise.all(world.nodes.map((n) => n.mirrorStats()?.enabled ?? false));
  assert.deepEqual(mirroring, [false, false], 'mirroring stops once the new universe serves');

  await finish(plan, driver);
});

test('a planted regression keeps the gate closed: switch refused with the reason, --force switches and is journaled', async (t) => {
  const { plan, newDb, driver, load } = await testing(t, 'wiki_gate_bad', true);
  await driver.line(/gate closed: .*GET \/wiki\/:title: \d+ unexpected mismatches/, 90_000);

  const refused = await imago(['switch', plan, '--json']);
  assert.equal(refused.code, 1, 'a closed gate refuses the switch');
  const answer = JSON.parse(refused.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.match(
    String(answer.error),
    /runtime-test gate is closed: .*GET \/wiki\/:title.*comment/,
    `imago switch: ${refused.stdout}${refused.stderr}`,
  );
  assert.equal((await events(newDb, 'wiki_gate_bad')).at(-1)?.phase, 'testing');

  const report = await imago(['report', plan, '--json']);
  assert.equal(report.code, 0, report.stderr);
  const whole = JSON.parse(report.stdout.trim().split('\n').at(-1) ?? '{}');
  const page = whole.endpoints.find((e: { endpoint: string }) => e.endpoint === 'GET /wiki/:title');
  assert.ok(page.mismatched > 0 && page.samples.length > 0, 'sample diffs show what differs');
  assert.equal(whole.gate.pass, false);

  const forced = await imago(['switch', plan, '--force', '--json']);
  assert.equal(forced.code, 0, forced.stdout + forced.stderr);
  const journal = await events(newDb, 'wiki_gate_bad');
  const forcedRecords = journal.filter((e) => e.event === 'gate-forced');
  assert.equal(forcedRecords.length, 1, 'the forced switch is journaled, once');
  const record = forcedRecords[0];
  assert.ok(record);
  assert.match(JSON.stringify(record.detail.reasons), /GET \/wiki\/:title/);
  assert.ok(journal.some((e) => e.event === 'switched'));

  await servedWithoutLoss(load, newDb);
  await finish(plan, driver);
});

test('with switchover.auto the driver switches by itself once the gate holds, and not before', async (t) => {
  const { plan, newDb, driver, load } = await testing(t, 'wiki_gate_auto', false, true);
  await driver.line(/switched at epoch/, 90_000);
  const journal = await events(newDb, 'wiki_gate_auto');
  const passed = journal.findIndex((e) => e.event === 'gate-passed');
  const prepared = journal.findIndex((e) => e.event === 'switch-prepare');
  assert.ok(passed >= 0 && prepared > passed, 'the switch started after the gate passed');
  assert.ok(!journal.some((e) => e.event === 'gate-forced' || e.event === 'command'));
  await servedWithoutLoss(load, newDb);
  await finish(plan, driver);
});
