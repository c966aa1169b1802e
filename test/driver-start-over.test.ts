// `imago start <plan> --fresh`, as users run it, against real clusters, a real driver process and a
// real ingress node: refused while the upgrade is live (and the live upgrade unharmed); after an
// abort, a plain `imago start` says how to begin again and starts nothing; --fresh needs --yes when
// nobody can be asked (or the upgrade's name typed on a terminal); with it, what the aborted attempt
// left is removed and the upgrade runs again from the start to `ready`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from '../src/universe/cluster.js';
import { withDeadline } from '../src/deadline.js';
import { loadPlan } from '../src/plan/index.js';
import { Journal, sendCommand, type JournalEvent } from '../src/driver/index.js';
import { root, runImago, startDriver, stopProvisionedApps, wikiUpgradeSpec } from './fixtures/driver-run.js';
import { oldWorld, sql, type OldWorld } from './switchover-fixture.js';

const NAME = 'wiki_start_over';
let world: OldWorld;
let dir: string;
let db: string;
let file: string;
const appPids: number[] = [];

before(async () => {
  world = await oldWorld({ pages: 40, revisions: 2, nodes: 1 });
  dir = mkdtempSync(join(tmpdir(), 'imago-start-over-test-'));
  db = await createDatabase(world.newCluster, NAME);
  file = join(dir, `${NAME}.yaml`);
  writeFileSync(file, JSON.stringify({ ...wikiUpgradeSpec(world, db, NAME), stateDir: join(dir, 'state') }));
});

after(async () => {
  // The start over removes the first attempt's journal: its app's pid is kept here.
  for (const pid of appPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already stopped
    }
  }
  await stopProvisionedApps(db, NAME);
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function journal(): Promise<{ events: JournalEvent[]; driverRunning: boolean }> {
  const j = await Journal.open(db, NAME);
  try {
    return { events: await j.events(), driverRunning: await j.driverRunning() };
  } finally {
    await j.close();
  }
}

/** Imago's capture for the upgrade on the old database: slot and publication names still there. */
async function captureLeft(): Promise<string[]> {
  const [r] = await sql(world.oldDb, [
    `SELECT slot_name AS name FROM pg_replication_slots WHERE slot_name LIKE '${NAME}%'
     UNION ALL SELECT pubname FROM pg_publication WHERE pubname LIKE '${NAME}%' ORDER BY 1`,
  ]);
  return (r?.rows ?? []).map((row: { name: string }) => row.name);
}

async function count(url: string, table: string, where = 'true'): Promise<number> {
  const [r] = await sql(url, [`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`]);
  return (r?.rows[0] as { n: number }).n;
}

/** `imago <args>`; with --json, its last stdout line parsed. */
async function imago(
  args: string[],
): Promise<{ code: number | null; out: string; json: Record<string, unknown> }> {
  const { code, stdout, stderr } = await runImago(args);
  const last = args.includes('--json') ? stdout.trim().split('\n').at(-1) : undefined;
  return { code, out: `${stdout}${stderr}`, json: last ? (JSON.parse(last) as Record<string, unknown>) : {} };
}

/** `imago <args>` on a pseudo-terminal (util-linux `script`), with `input` typed in. */
function imagoOnTerminal(args: string[], input: string): Promise<{ code: number | null; out: string }> {
  const command = [process.execPath, join(root, 'bin/imago.js'), ...args].map((a) => `'${a}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const typed = { done: false };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    // Typed once the question is asked (what a person does), not before.
    if (!typed.done && out.includes('to confirm:')) {
      typed.done = true;
      child.stdin.write(input);
    }
  });
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return withDeadline(
    `imago ${args.join(' ')} on a terminal`,
    new Promise((resolve) => child.once('exit', (code) => resolve({ code, out }))),
    90_000,
  );
}

test('imago start --fresh: refused while live, hinted after abort, confirmed, then a clean start', async () => {
  // Never started: --fresh has nothing to remove, says so, and the upgrade starts as usual.
  const first = startDriver(file, {}, ['--fresh', '--yes']);
  await first.line(new RegExp(`upgrade ${NAME} has not started: --fresh has nothing to remove`), 30_000);
  await first.line(/is ready/, 90_000);
  const pid = (await journal()).events.findLast((e) => e.event === 'provisioned')?.detail.pid;
  if (typeof pid === 'number') appPids.push(pid);
  const pages = await count(world.oldDb, 'cur');
  assert.equal(await count(db, 'page'), pages, 'the first attempt copied every page');

  // Live: refused, naming the upgrade and its phase, with `imago abort` as the way; nothing touched.
  const live = await imago(['start', file, '--fresh', '--yes', '--json']);
  assert.equal(live.code, 2, live.out);
  assert.match(String(live.json.error), new RegExp(`upgrade ${NAME} is live \\(phase ready since `));
  assert.equal(live.json.subject, NAME);
  assert.match(String(live.json.hint), /imago abort .*wiki_start_over\.yaml first/);
  const running = await journal();
  assert.equal(running.driverRunning, true, 'the live driver still holds its lock');
  assert.equal(running.events.at(-1)?.phase, 'ready');
  assert.deepEqual(await captureLeft(), [`${NAME}_pub`, `${NAME}_slot`]);
  assert.equal(await count(db, 'page'), pages);
  // And it still answers: the abort below is carried out by this driver.
  const aborted = await sendCommand(await loadPlan(file), 'abort', { timeoutMs: 60_000 });
  assert.equal(aborted.ok, true, JSON.stringify(aborted));
  assert.equal((await withDeadline('the driver exits after abort', first.exit, 30_000)).code, 0);
  const ended = (await journal()).events;
  assert.equal(ended.at(-1)?.phase, 'aborted');
  assert.deepEqual(await captureLeft(), []);

  // Aborted, but some driver holds the upgrade's lock (a session like a driver's): refused too.
  const holder = await Journal.open(db, NAME, { lock: true });
  try {
    const held = await imago(['start', file, '--fresh', '--yes', '--json']);
    assert.equal(held.code, 2, held.out);
    assert.match(String(held.json.error), new RegExp(`a driver is running upgrade ${NAME} \\(it holds`));
    assert.equal((await journal()).events.length, ended.length, 'nothing was removed');
  } finally {
    await holder.close();
  }

  // What a new copy must not inherit: a row in a target the aborted attempt "wrote".
  await sql(db, [`INSERT INTO text (old_id, old_text, old_flags) VALUES (999999, 'stale', '')`]);

  // A plain start: says when it was aborted and how to begin again, starts nothing, journals nothing.
  const plain = await imago(['start', file, '--json']);
  assert.equal(plain.code, 0, plain.out);
  assert.match(
    plain.out,
    new RegExp(
      `upgrade ${NAME} was aborted at \\S+ \\S+; to begin again: imago start \\S*${NAME}\\.yaml --fresh`,
    ),
  );
  assert.doesNotMatch(plain.out, /resuming/);
  assert.deepEqual(plain.json, { name: NAME, phase: 'aborted' });
  assert.equal((await journal()).events.length, ended.length);
  assert.deepEqual(await captureLeft(), []);

  // --fresh where nobody can be asked: what would go is listed, then refused naming --yes.
  const unconfirmed = await imago(['start', file, '--fresh', '--json']);
  assert.equal(unconfirmed.code, 2, unconfirmed.out);
  assert.equal(unconfirmed.json.subject, '--yes');
  assert.match(String(unconfirmed.json.hint), /--yes/);
  assert.match(unconfirmed.out, /starting over removes:/);
  assert.match(
    unconfirmed.out,
    /new database postgres(ql)?:\/\/\S+: every row of the converted tables page, revision, text \(emptied\)/,
  );
  assert.match(
    unconfirmed.out,
    new RegExp(`control database \\S+: the journal of ${NAME} \\(\\d+ events\\)`),
  );
  // On a terminal, anything but the upgrade's name is no.
  const mistyped = await imagoOnTerminal(['start', file, '--fresh'], 'yes\n');
  assert.notEqual(mistyped.code, 0, mistyped.out);
  assert.match(mistyped.out, /type the upgrade name \(wiki_start_over\) to confirm:/);
  assert.match(mistyped.out, /not confirmed: "yes" is not the upgrade name/);
  assert.equal((await journal()).events.length, ended.length, 'nothing was removed');
  assert.equal(await count(db, 'text', 'old_id = 999999'), 1, 'nothing was emptied');

  // Confirmed: the attempt's leftovers go, and the upgrade runs from the start to ready again.
  const second = startDriver(file, {}, ['--fresh', '--yes']);
  try {
    await second.line(/the aborted attempt is removed; starting over/, 30_000);
    await second.line(/is ready/, 90_000);
    const events = (await journal()).events;
    assert.equal(events[0]?.event, 'planned', 'the journal begins again');
    assert.ok(!events.some((e) => e.phase === 'aborted' || e.event === 'resumed'));
    assert.deepEqual(await captureLeft(), [`${NAME}_pub`, `${NAME}_slot`]);
    assert.equal(await count(db, 'text', 'old_id = 999999'), 0, 'the targets were emptied before the copy');
    assert.equal(await count(db, 'page'), pages);
    assert.ok(world.nodes.every((n) => n.route() === 'old' && !n.holding()));
  } finally {
    const done = await sendCommand(await loadPlan(file), 'abort', { timeoutMs: 60_000 }).catch(
      (err: unknown) => ({ ok: false, error: String(err) }),
    );
    assert.equal(done.ok, true, JSON.stringify(done));
    await withDeadline('the second driver exits after abort', second.exit, 30_000).catch(() => second.kill());
  }
});
