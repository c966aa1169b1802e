// The two-phase switch across two ingress nodes, on real clusters and real HTTP, under load:
// commit with revoke fencing and late writes from a hidden writer; a node killed during PREPARE; a
// stalled stream; a stopped converter. Every case checks the invariant: each acknowledged write is
// in the universe that serves afterwards, and no old answer after a client saw the new version.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createDatabase } from '../src/universe/cluster.js';
import { Converter } from '../src/conversion/converter.js';
import {
  Fence,
  IngressNode,
  LateWriteDetector,
  memoryJournal,
  runSwitchover,
  type SwitchOptions,
} from '../src/switchover/index.js';
import { withDeadline } from '../src/deadline.js';
import wikiConversion from '../examples/wiki/conversion.js';
import { startWiki as startWikiV2 } from '../examples/wiki/v2/server.js';
import type { RunningWiki } from '../examples/wiki/app.js';
import { APP_ROLE, checkInvariant, loadOn, oldWorld, sql, type OldWorld } from './switchover-fixture.js';

const PAGES = 100;
const BUDGET = {
  // Generous: these machines are shared; the pause figures come from the bench, not from here.
  maxPauseMs: 4_000,
  maxCatchUpLagMs: 2_000,
  deadlines: {
    precheckMs: 60_000,
    prepareMs: 500,
    drainMs: 1_000,
    fenceMs: 1_000,
    catchUpMs: 2_500,
    commitMs: 3_000,
  },
};

let world: OldWorld;
let v2: RunningWiki;
let newDb: string;
let converter: Converter;
const lateWrites = new LateWriteDetector();

before(async () => {
  world = await oldWorld({ pages: PAGES, revisions: 2, nodes: 2 });
  newDb = await createDatabase(world.newCluster, 'wiki');
  v2 = await startWikiV2({ databaseUrl: newDb });
  for (const [i, node] of world.specs.entries()) {
    const n = new IngressNode(node);
    await n.setUpstreams((await n.state(1000)).epoch, 'new', [v2.url], 1000);
    assert.ok(world.nodes[i]);
  }
  converter = await startConverter();
});

after(async () => {
  await converter?.stop({ dropCapture: true }).catch(() => {});
  await v2?.close().catch(() => {});
  await world?.close();
});

async function startConverter(): Promise<Converter> {
  const c = new Converter({
    sourceUrl: world.oldDb,
    targetUrl: newDb,
    conversion: wikiConversion,
    name: 'sw_test',
  });
  c.onApplied(lateWrites.observe);
  await c.prepare();
  await c.copy();
  await c.startStreaming(() => {});
  return c;
}

function options(extra: Partial<SwitchOptions> = {}): SwitchOptions {
  return {
    nodes: world.specs.map((s) => new IngressNode(s)),
    converter,
    fence: new Fence(world.oldDb, 'revoke', APP_ROLE, ['cur', 'old']),
    budget: BUDGET,
    journal: memoryJournal(),
    lateWrites,
    ...extra,
  };
}

/** Runs the load long enough to have writes in flight around the switch (answers, not time, decide). */
async function answered(load: { count(): number }, n: number): Promise<void> {
  const start = load.count();
  await withDeadline(
    `${n} answers from the load`,
    (async () => {
      while (load.count() < start + n) await new Promise((r) => setTimeout(r, 20));
    })(),
    20_000,
  );
}

async function appCanWrite(): Promise<boolean> {
  const client = new pg.Client({ connectionString: world.appDb });
  await client.connect();
  try {
    await client.query(`UPDATE cur SET cur_user = cur_user WHERE cur_id = 1`);
    return true;
  } catch {
    return false;
  } finally {
    await client.end();
  }
}

test('a node killed during PREPARE aborts: the survivor serves the old universe without a failed request', async () => {
  const survivor = world.nodes[0];
  assert.ok(survivor);
  const load = loadOn([survivor.url], 100, PAGES);
  await answered(load, 40);
  const doomed = world.nodes[1];
  const result = await runSwitchover(
    options({ beforeStep: async (step) => void (step === 'prepare' && (await doomed?.close())) }),
  );
  await answered(load, 40);
  const observed = await load.stop();
  assert.equal(result.switched, false);
  assert.equal(result.step, 'prepare');
  assert.match(result.reason ?? '', /node2/);
  assert.equal(survivor.route(), 'old');
  assert.equal(survivor.holding(), false);
  assert.equal(observed.failed, 0, observed.failures.join('\n'));
  const { lost, mixed } = await checkInvariant(observed, { universe: 'old', databaseUrl: world.oldDb });
  assert.deepEqual(lost, []);
  assert.equal(mixed, 0);
  assert.ok(observed.answers.every((a) => a.version === '1'));
  // Bring the second node back for the next cases (a new node on a new port).
  const { startIngress } = await import('../src/ingress/index.js');
  const reborn = await startIngress({
    upstreams: { old: [world.v1.url], new: [v2.url] },
    route: 'old',
    control: { token: world.token, nodeId: 'node2' },
  });
  world.nodes[1] = reborn;
  world.specs[1] = { name: 'node2', control: reborn.control?.url ?? '', token: world.token };
});

test('the precheck waits for the new database’s statistics and refuses past its deadline, holding nothing', async () => {
  const result = await runSwitchover(
    options({
      converter: {
        catchUp: (ms) => converter.catchUp(ms),
        bringSequencesPast: () => converter.bringSequencesPast(),
        statisticsReady: () => new Promise<void>(() => {}), // an ANALYZE that never ends
      },
      budget: { ...BUDGET, deadlines: { ...BUDGET.deadlines, precheckMs: 300 } },
    }),
  );
  assert.equal(result.switched, false);
  assert.equal(result.step, 'precheck');
  assert.match(result.reason ?? '', /planner statistics .*300 ms/);
  assert.ok(world.nodes.every((n) => n.route() === 'old' && !n.holding()));
});

test('the precheck refuses a node whose new-universe backends all fail their health check', async () => {
  const { startIngress } = await import('../src/ingress/index.js');
  const checked = await startIngress({
    upstreams: { old: [world.v1.url], new: [v2.url] },
    route: 'old',
    control: { token: world.token, nodeId: 'checked' },
    healthCheck: { path: '/no-such-health-path', intervalMs: 50 }, // v2 answers 404
  });
  try {
    const node = new IngressNode({
      name: 'checked',
      control: checked.control?.url ?? '',
      token: world.token,
    });
    const end = Date.now() + 10_000; // the loop stops at the deadline too, not only the wait
    await withDeadline(
      'the health check taking v2 out',
      (async () => {
        while ((await node.state(1000)).backends?.new?.[0]?.up !== false && Date.now() < end)
          await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
    );
    const result = await runSwitchover(options({ nodes: [node] }));
    assert.equal(result.switched, false);
    assert.equal(result.step, 'precheck');
    assert.match(result.reason ?? '', /every new-universe backend is out of rotation .* on checked/);
    assert.equal(checked.holding(), false);
  } finally {
    await checked.close();
  }
});

test('a stream stalled past the budget aborts, and the fence is lifted', async () => {
  const load = loadOn(
    world.nodes.map((n) => n.url),
    150,
    PAGES,
  );
  await answered(load, 40);
  const blocker = new pg.Client({ connectionString: newDb });
  await blocker.connect();
  try {
    const result = await runSwitchover(
      options({
        beforeStep: async (step) => {
          // The applier cannot write `revision` until this transaction ends, and a write that it
          // must apply before the fence marker is on its way: the stream stalls.
          if (step === 'fence') {
            await blocker.query('BEGIN; LOCK TABLE revision IN ACCESS EXCLUSIVE MODE');
            await sql(world.oldDb, [
              `INSERT INTO old (old_title, old_text, old_comment, old_timestamp) VALUES ('Page_3', 'stall', 'stall-1', now())`,
            ]);
          }
        },
      }),
    );
    await blocker.query('ROLLBACK');
    await answered(load, 40);
    const observed = await load.stop();
    assert.equal(result.switched, false, 'must not switch');
    assert.equal(result.step, 'catch-up', result.reason);
    assert.ok(result.pauseMs < BUDGET.maxPauseMs + BUDGET.deadlines.commitMs, `paused ${result.pauseMs} ms`);
    assert.equal(await appCanWrite(), true, 'the fence must be lifted after the abort');
    assert.equal(observed.failed, 0, observed.failures.join('\n'));
    const { lost, mixed } = await checkInvariant(observed, { universe: 'old', databaseUrl: world.oldDb });
    assert.deepEqual(lost, []);
    assert.equal(mixed, 0);
  } finally {
    await blocker.end().catch(() => {});
  }
});

test('commit across two nodes with revoke fencing; a hidden writer after the fence is reported, not lost', async () => {
  const load = loadOn(
    world.nodes.map((n) => n.url),
    100,
    PAGES,
  );
  await answered(load, 60);
  const journal = memoryJournal();
  const lines: string[] = [];
  const hidden = new pg.Client({ connectionString: world.oldDb });
  await hidden.connect();
  const result = await runSwitchover(
    options({
      journal,
      log: (line) => lines.push(line),
      beforeStep: async (step) => {
        // A cron job writing as another role right after the fence: a hidden dependency.
        if (step === 'catch-up')
          await hidden.query(
            `INSERT INTO old (old_title, old_text, old_comment, old_timestamp) VALUES ('Page_1', 'cron', 'cron-1', now())`,
          );
      },
    }),
  );
  assert.equal(
    result.switched,
    true,
    `${result.reason}\n${lines.join('\n')}\n${JSON.stringify(converter.conversionStats())}`,
  );
  assert.equal(await appCanWrite(), false, 'the old app is fenced after the switch');
  await hidden.query(
    `INSERT INTO old (old_title, old_text, old_comment, old_timestamp) VALUES ('Page_2', 'cron', 'cron-2', now())`,
  );
  await hidden.end();
  await answered(load, 60);
  const observed = await load.stop();
  assert.equal(observed.failed, 0, observed.failures.join('\n'));
  assert.ok(result.pauseMs < BUDGET.maxPauseMs, `paused ${result.pauseMs} ms`);
  assert.deepEqual(
    journal.events.map((e) => e.event),
    ['switch-prepare', 'switch-commit', 'switched'],
  );
  for (const n of world.nodes) assert.equal(n.route(), 'new');
  const { lost, mixed } = await checkInvariant(observed, { universe: 'new', databaseUrl: newDb });
  assert.deepEqual(lost, []);
  assert.equal(mixed, 0);
  // The late writes arrive through the stream: reported with their table, and converted.
  await withDeadline(
    'both late writes detected',
    (async () => {
      while (lateWrites.writes().length < 2) await new Promise((r) => setTimeout(r, 20));
    })(),
    10_000,
  );
  assert.ok(lateWrites.writes().every((w) => w.tables.old === 1));
  const [found] = await sql(newDb, [
    `SELECT count(*)::int AS n FROM revision WHERE rev_comment IN ('cron-1', 'cron-2')`,
  ]);
  assert.equal(found?.rows[0]?.n, 2);
});
