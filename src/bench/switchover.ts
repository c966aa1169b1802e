/**
 * `imago bench switchover`: the demo wiki under mixed load (about 400 requests/s, a quarter writes)
 * through two ingress nodes; each trial re-creates the pair — a fresh new database and wiki v2
 * process, a capture, a copy and a stream — then switches old → new with the two-phase protocol
 * (revoke fencing of the wiki's role) and measures the pause. The trial ends with a reset to the old
 * universe (hold, drain, release to old: there is no reverse stream yet, so the writes the new
 * universe took are checked in that trial's new database, which is then retired).
 *
 * Every acknowledged write is looked up where the universe that acknowledged it keeps it; an old
 * answer to a request sent after a client saw the new version in the same trial counts as mixed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startCluster, createDatabase } from '../universe/cluster.js';
import { startApp, type AppProcess } from '../universe/app-process.js';
import { teardownAll } from '../universe/teardown.js';
import { startIngress, type Ingress } from '../ingress/index.js';
import { Converter } from '../conversion/converter.js';
import {
  Fence,
  IngressNode,
  memoryJournal,
  releaseAll,
  runSwitchover,
  type SwitchResult,
} from '../switchover/index.js';
import { seedWiki } from '../../examples/wiki/seed.js';
import { createWikiAppRole, WIKI_APP_ROLE } from '../../examples/wiki/app-role.js';
import wikiConversion from '../../examples/wiki/conversion.js';
import { missingWrites, VERSION_HEADER, wikiOperations } from '../../examples/wiki/workload.js';
import { settle } from '../demo/settle.js';
import { startLoad, percentile, type Answer, type Load } from './load.js';
import type { Scenario } from './scenarios.js';
import { TS_LOADER } from '../loader/args.js';

const wikiDir = fileURLToPath(new URL('../../examples/wiki/', import.meta.url));
const ROLE = WIKI_APP_ROLE;
const BUDGET = {
  maxPauseMs: 2_000,
  maxCatchUpLagMs: 300,
  deadlines: {
    precheckMs: 30_000,
    prepareMs: 500,
    drainMs: 1_000,
    fenceMs: 500,
    catchUpMs: 1_000,
    commitMs: 5_000,
  },
};

export const switchoverScenario: Scenario = {
  describe:
    'two-phase switchover across two ingress nodes under 400 req/s: pause, failed requests, lost writes',
  async run({ out, options }) {
    const trials = Number(options.trials ?? 20);
    const rate = Number(options.rate ?? 400);
    const pages = Number(options.pages ?? 300);
    const logs = mkdtempSync(join(tmpdir(), 'imago-bench-switch-'));
    const nodes: Ingress[] = [];
    const loads: Load[] = [];
    try {
      const oldCluster = await startCluster({ name: 'old', ephemeral: true });
      const newCluster = await startCluster({ name: 'new', ephemeral: true });
      const oldDb = await createDatabase(oldCluster, 'wiki');
      await seedWiki(oldDb, { pages, revisionsPerPage: 3 });
      const appDb = await createWikiAppRole(oldDb);
      const v1 = await wiki(1, appDb, logs);
      const token = randomBytes(16).toString('hex');
      for (let i = 0; i < 2; i++)
        nodes.push(
          await startIngress({
            upstreams: { old: [v1.url] },
            route: 'old',
            control: { token, nodeId: `edge${i + 1}` },
          }),
        );
      const control = nodes.map(
        (n, i) => new IngressNode({ name: `edge${i + 1}`, control: n.control?.url ?? '', token }),
      );
      const run = randomBytes(3).toString('hex');
      for (const [i, n] of nodes.entries())
        loads.push(
          startLoad({
            url: n.url,
            workers: 8,
            rate: rate / 2,
            next: wikiOperations(pages, `${run}e${i}`),
            versionHeader: VERSION_HEADER,
          }),
        );
      out.say(`old universe: wiki v1 (${pages} pages) behind 2 ingress nodes, ${rate} req/s, 1 write in 4`);

      const results: SwitchResult[] = [];
      let lost = 0;
      let mixed = 0;
      for (let t = 0; t < trials; t++) {
        const newDb = await createDatabase(newCluster, `wiki_t${t}`);
        const v2 = await wiki(2, newDb, logs);
        for (const n of control) await n.setUpstreams((await n.state(1_000)).epoch, 'new', [v2.url], 1_000);
        const converter = new Converter({
          sourceUrl: oldDb,
          targetUrl: newDb,
          conversion: wikiConversion,
          name: `bench_t${t}`,
        });
        await converter.prepare();
        await converter.copy();
        let streamError: unknown;
        await converter.startStreaming((err) => (streamError = err));
        await settle(1_000, () => streamError);
        const trialStart = performance.now();
        const result = await runSwitchover({
          nodes: control,
          converter,
          fence: new Fence(oldDb, 'revoke', ROLE, ['cur', 'old']),
          budget: BUDGET,
          journal: memoryJournal(),
        });
        results.push(result);
        out.say(
          `trial ${t + 1}/${trials}: ${result.switched ? 'committed' : `aborted at ${result.step} (${result.reason})`}, pause ${result.pauseMs.toFixed(1)} ms (prepare ${result.prepareMs.toFixed(1)}, drain ${result.drainMs.toFixed(1)}, fence ${result.fenceMs.toFixed(1)}, catch-up ${result.catchUpMs}), ${result.heldRequests} held`,
        );
        await settle(result.switched ? 800 : 0, () => undefined);
        // Reset to the old universe: hold, drain the new one, stop the stream, check, lift the
        // fence, release to old. The stream stops before old takes writes again: the old app's new
        // rows would otherwise be converted into this retired database with ids (v1's sequences)
        // that v2 has already used since the switch, and overwrite them.
        const resetStart = performance.now();
        let epoch = 0;
        if (result.switched) {
          epoch =
            Math.max(...(await Promise.all(control.map((n) => n.state(1_000)))).map((s) => s.epoch)) + 1;
          await Promise.all(control.map((n) => n.hold(epoch, 1_000)));
          await Promise.all(control.map((n) => n.drain('new', 5_000)));
        }
        await converter.stop({ dropCapture: true });
        const window = loads
          .flatMap((l) => l.answers())
          .filter((a) => a.sentAt >= trialStart && a.sentAt < resetStart);
        mixed += mixedIn(window);
        // A committed trial's new database must hold every write of the window: converted (v1) or its own (v2).
        if (result.switched) {
          const ids = window.flatMap((a) => (a.write ? [a.write] : []));
          const missing = await missingWrites(newDb, ids);
          if (missing.length) out.say(`  lost in trial ${t + 1}: ${missing.join(', ')}`);
          lost += missing.length;
          await fenceLift(oldDb);
          await releaseAll(control, epoch, 'old', 5_000);
        }
        await v2.stop();
      }
      const observed = await Promise.all(loads.splice(0).map((l) => l.stop()));
      // Writes the old universe acknowledged must be in the old database (it never lost any).
      const v1Acks = observed.flatMap((o) =>
        o.acknowledged.filter((w) => w.version === '1').map((w) => w.id),
      );
      lost += (await missingV1(oldDb, v1Acks)).length;
      const pauses = results.filter((r) => r.held).map((r) => r.pauseMs);
      const failed = observed.reduce((a, o) => a + o.failed, 0);
      const report = {
        trials,
        committed: results.filter((r) => r.switched).length,
        aborted: results.filter((r) => r.held && !r.switched).length,
        refused: results.filter((r) => !r.held).length,
        pause_ms_p50: round(percentile(pauses, 50)),
        pause_ms_p99: round(percentile(pauses, 99)),
        pause_ms_max: round(Math.max(0, ...pauses)),
        failed_requests: failed,
        lost_writes: lost,
        mixed_version_answers: mixed,
        acknowledged_writes: observed.reduce((a, o) => a + o.acknowledged.length, 0),
        requests: observed.reduce((a, o) => a + o.requests, 0),
        prepare_ms_p50: round(
          percentile(
            results.map((r) => r.prepareMs),
            50,
          ),
        ),
        drain_ms_p50: round(
          percentile(
            results.map((r) => r.drainMs),
            50,
          ),
        ),
        fence_ms_p50: round(
          percentile(
            results.map((r) => r.fenceMs),
            50,
          ),
        ),
        catch_up_ms_p50: round(
          percentile(
            results.map((r) => r.catchUpMs),
            50,
          ),
        ),
        rate,
        nodes: 2,
        ...(failed ? { failures: observed.flatMap((o) => o.failures).slice(0, 10) } : {}),
      };
      out.say(
        `${report.committed}/${trials} committed; pause p50 ${report.pause_ms_p50} ms, p99 ${report.pause_ms_p99} ms, max ${report.pause_ms_max} ms; ${failed} failed requests; ${lost} lost writes`,
      );
      return report;
    } finally {
      await Promise.all(loads.map((l) => l.stop().catch(() => undefined)));
      for (const n of nodes) await n.close().catch(() => {});
      await teardownAll();
      rmSync(logs, { recursive: true, force: true });
    }
  },
};

function wiki(version: 1 | 2, databaseUrl: string, logs: string): Promise<AppProcess> {
  return startApp({
    name: `wiki v${version}`,
    command: [process.execPath, ...TS_LOADER, join(wikiDir, `v${version}`, 'server.ts')],
    env: { DATABASE_URL: databaseUrl },
    logFile: join(logs, `wiki-v${version}.log`),
  });
}

/** After a committed trial the old database stays fenced; the reset gives the role its writes back. */
async function fenceLift(oldDb: string): Promise<void> {
  await query(oldDb, [`GRANT INSERT, UPDATE, DELETE, TRUNCATE ON cur, old TO ${ROLE}`]);
}

async function query(url: string, statements: string[], params: unknown[] = []): Promise<pg.QueryResult[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const out: pg.QueryResult[] = [];
    for (const s of statements) out.push(await client.query(s, params.length ? params : undefined));
    return out;
  } finally {
    await client.end();
  }
}

async function missingV1(oldDb: string, ids: string[]): Promise<string[]> {
  const [r] = await query(
    oldDb,
    [
      'SELECT cur_comment AS c FROM cur WHERE cur_comment = ANY($1::text[]) UNION SELECT old_comment FROM old WHERE old_comment = ANY($1::text[])',
    ],
    [ids],
  );
  const found = new Set((r?.rows ?? []).map((row: { c: string }) => row.c));
  return ids.filter((id) => !found.has(id));
}

function mixedIn(answers: Answer[]): number {
  const firstNew = Math.min(...answers.filter((a) => a.version === '2').map((a) => a.receivedAt));
  return answers.filter((a) => a.version === '1' && a.sentAt > firstNew).length;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
