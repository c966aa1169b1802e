/**
 * `imago bench runtime-test`: the wiki under concurrent reads and edits through the ingress, with
 * the runtime test mirroring reads to v2 behind the consistency barrier — twice: with the faithful
 * v2, and with a v2 carrying a planted regression the comparator is not told about. The client's
 * latency is measured with mirroring off and on in alternating phases (same run, same machine), so
 * `primary_p99_ratio` says what mirroring costs the clients.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil, withDeadline } from '../deadline.js';
import type { MirrorStats } from '../ingress/index.js';
import type { IngressNode } from '../switchover/index.js';
import { RemoteRuntimeTest } from '../runtime-test/remote.js';
import { startIngressProcess, type IngressProcess } from './ingress-process.js';
import type { RuntimeTestConfig, RuntimeTestReport } from '../runtime-test/index.js';
import { ImagoError } from '../errors.js';
import { startApp, type AppProcess } from '../universe/app-process.js';
import { createDatabase, startCluster } from '../universe/cluster.js';
import { onTeardown, teardownAll } from '../universe/teardown.js';
import { seedWiki } from '../../examples/wiki/seed.js';
import { wikiRuntimeTest } from '../../examples/wiki/runtime-test.js';
import { median, percentile } from './load.js';
import { startConverterProcess, type ConverterProcess } from './converter-process.js';
import type { PhaseRequest, PhaseResult } from './load-child.js';
import type { Output } from '../cli/output.js';
import type { Scenario } from './scenarios.js';
import { TS_LOADER } from '../loader/args.js';
import { deprioritise, parsePlacement, pin, planPlacement, postmasterOf } from './placement.js';

/** The wiki plan's runtime-test configuration, with the bench's overrides of what mirroring costs. */
function benchConfig(options: Record<string, unknown>): RuntimeTestConfig {
  const rate = (name: string): number | undefined => {
    if (options[name] === undefined) return undefined;
    const x = Number(options[name]);
    if (!(x > 0 && x <= 1))
      throw new ImagoError(`expected a share in (0, 1], not ${String(options[name])}`, name);
    return x;
  };
  const sampleRate = rate('sampleRate') ?? wikiRuntimeTest.sampleRate;
  const calibrationRate = rate('calibrationRate') ?? wikiRuntimeTest.noise?.calibrationRate;
  const budget = options.maxComparedPerSecond;
  if (budget !== undefined && budget !== 'none' && !(Number(budget) > 0))
    throw new ImagoError(
      `expected a positive number of reads per second or "none", not ${String(budget)}`,
      'maxComparedPerSecond',
    );
  const { maxComparedPerSecond: planBudget, ...plan } = wikiRuntimeTest;
  const perSecond = budget === undefined ? planBudget : budget === 'none' ? undefined : Number(budget);
  return {
    ...plan,
    ...(perSecond === undefined ? {} : { maxComparedPerSecond: perSecond }),
    // v2 runs in the idle scheduling class here (deprioritise): its latency says nothing of v2's.
    gate: { ...wikiRuntimeTest.gate, maxLatencyRatio: 100 },
    ...(sampleRate === undefined ? {} : { sampleRate }),
    noise: { ...wikiRuntimeTest.noise, ...(calibrationRate === undefined ? {} : { calibrationRate }) },
  };
}

const wikiDir = fileURLToPath(new URL('../../examples/wiki/', import.meta.url));
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

interface Phase {
  mirrored: boolean;
  latencies: number[];
  failed: number;
  writes: number;
}

export const runtimeTestScenario: Scenario = {
  describe: 'runtime test: faithful v2 vs a planted regression, and what mirroring costs client p99',
  async run({ out, options }) {
    const seconds = Number(options.duration ?? 45);
    // Eleven: one repetition's p99 (its ~11th-slowest request of ~1,100 per arm) spans 0.5–1.6 × on
    // an undisturbed machine, and the median of five still moved 0.94–1.17 between runs of one build
    // (docs/benchmarks.md, runtime-test, 2026-12-04).
    const repetitions = Math.max(1, Number(options.repetitions ?? 11));
    const regressionSeconds = Math.max(3, Math.round(seconds / 6));
    const sliceMs = 1000;
    const guardMs = 250;
    const rate = Number(options.rate ?? 100);
    const pages = Number(options.pages ?? 1000);
    const logs = mkdtempSync(join(tmpdir(), 'imago-bench-rt-'));
    const config = benchConfig(options);
    const placement = planPlacement(parsePlacement(options.placement));
    // Neighbours on a shared machine move p99 more than anything measured here: report their load.
    const loadStart = loadavg()[0] ?? 0;
    let ingress: IngressProcess | undefined;
    let converter: ConverterProcess | undefined;
    let current: RemoteRuntimeTest | undefined;
    let ok = false;
    let client: Client | undefined;
    try {
      out.say('starting old and new universes (PostgreSQL + wiki v1 / v2)…');
      const [oldCluster, newCluster] = await Promise.all([
        startCluster({ name: 'rt-old', ephemeral: true }),
        startCluster({ name: 'rt-new', ephemeral: true }),
      ]);
      const [oldDb, newDb] = await Promise.all([
        createDatabase(oldCluster, 'wiki'),
        createDatabase(newCluster, 'wiki'),
      ]);
      await seedWiki(oldDb, { pages, revisionsPerPage: 3 });
      const v1 = await wiki(1, oldDb, logs, {});
      let v2 = await wiki(2, newDb, logs, {});
      // In its own process, as the driver runs it apart from the ingress nodes.
      converter = await startConverterProcess({ sourceUrl: oldDb, targetUrl: newDb, name: 'bench_rt' });
      const newServer = await postmasterOf(newDb);
      deprioritise([v2.pid, newServer ?? 0]);
      client = startClient();
      const conv = converter;
      // As in production: the node in its own process ships what it mirrors; the comparison runs
      // next to the conversion (here the bench's process stands for the driver).
      ingress = await startIngressProcess({ old: [v1.url], workers: 1 });
      // The old side first, so that nothing it forks meanwhile lands on the new half. Then the
      // bench's whole tree but the old side: helpers nobody lists (its esbuild service) are the driver's.
      const oldSide = [v1.pid, (await postmasterOf(oldDb)) ?? 0, ingress.pid, client.pid];
      pin(oldSide, placement.oldCpus);
      pin([process.pid, v2.pid, newServer ?? 0, converter.pid], placement.newCpus, oldSide);
      if (placement.note) out.say(`placement: shared CPUs (${placement.note})`);
      else if (placement.mode === 'split')
        out.say(
          `placement: old universe, ingress and clients on CPUs ${placement.oldCpus}; new universe, conversion and driver on ${placement.newCpus}`,
        );
      const node = ingress.node;
      const remote = (newAppUrl: string) =>
        RemoteRuntimeTest.start({ config, conversion: conv, newAppUrl, oldUrls: [v1.url] });
      const rt = (current = await remote(v2.url));
      const lane: MirrorLane = {
        url: ingress.url,
        set: (on) => (on ? current?.mirrorOn([node], true) : current?.mirrorOff([node], true)),
        settled: (ms) => settleMirror(node, current, ms),
      };

      out.say(
        `faithful v2: ${repetitions} × ${seconds} s of load, ${rate} req/s, 1 write in 4; arms plain / control / mirrored rotating every ${sliceMs} ms`,
      );
      // Repetitions, and the median of their ratios: one neighbour's burst moves one repetition's p99.
      const runs: ArmRun[] = [];
      for (let i = 0; i < repetitions; i++) {
        const split = await toggledRun(client, lane, { seconds, rate, pages, sliceMs, guardMs });
        runs.push(split);
        out.say(`  repetition ${i + 1}:`);
        for (const arm of ARMS)
          out.say(
            `    ${arm.padEnd(8)}: client p50 ${round(percentile(split.arms[arm], 50))} ms, p99 ${round(percentile(split.arms[arm], 99))} ms (${split.arms[arm].length} requests)`,
          );
      }
      const ratios = runs.map(armRatios);
      await lane.settled(10_000);
      const faithful = rt.report();
      const faithfulGate = rt.gate();
      await rt.close();
      const failure = converter.failure();
      if (failure) throw new Error(`conversion failed: ${failure}`);
      sayReport(out, 'faithful', faithful);

      out.say('regression: v2 restarted with WIKI_V2_PLANTED_REGRESSION=1 (not declared to the comparator)');
      await v2.stop();
      v2 = await wiki(2, newDb, logs, { WIKI_V2_PLANTED_REGRESSION: '1' });
      deprioritise([v2.pid]);
      // Started by the bench, it inherits the new half already; this only makes sure.
      pin([v2.pid], placement.newCpus);
      const bugged = (current = await remote(v2.url));
      const reg = await phase(client, lane, true, regressionSeconds, rate, pages, 'reg');
      await lane.settled(10_000);
      const regression = bugged.report();
      const regressionGate = bugged.gate();
      await bugged.close();
      sayReport(out, 'regression', regression);

      const med = (pick: (r: ReturnType<typeof armRatios>) => number) => round(median(ratios.map(pick)));
      const noisePaths = faithful.endpoints.flatMap((e) =>
        e.noisePaths.map((n) => `${e.endpoint} ${n.path}`),
      );
      ok = true;
      return {
        scenario: 'runtime-test',
        machine_load_1m: { start: round(loadStart), end: round(loadavg()[0] ?? 0) },
        compared: faithful.totals.compared,
        unexpected_mismatches_faithful: faithful.totals.mismatched,
        regression_detected: regression.totals.mismatched > 0 && !regressionGate.pass,
        noise_paths: noisePaths.length,
        primary_p99_ratio: med((r) => r.p99),
        primary_p99_plain_ms: med((r) => r.p99PlainMs),
        primary_p99_mirrored_ms: med((r) => r.p99MirroredMs),
        primary_p50_ratio: med((r) => r.p50),
        // Every repetition's requests in one sample per arm: a p99 over R times as many requests.
        primary_p99_ratio_pooled: round(pooledP99Ratio(runs)),
        // Two unmirrored arms compared: what the machine's noise alone does to the same ratios.
        noise_floor_p99_ratio: med((r) => r.noiseP99),
        noise_floor_p50_ratio: med((r) => r.noiseP50),
        repetitions: ratios.map((r) => ({
          p99: round(r.p99),
          p50: round(r.p50),
          noise_p99: round(r.noiseP99),
        })),
        failed_requests: runs.reduce((n, r) => n + r.failed, 0) + reg.failed,
        writes_during_faithful: runs.reduce((n, r) => n + r.writes, 0),
        faithful_noisy: faithful.totals.noisy,
        faithful_errors: faithful.totals.errors,
        faithful_skipped: faithful.totals.skipped,
        faithful_gate_pass: faithfulGate.pass,
        faithful_gate_reasons: faithfulGate.reasons,
        regression_mismatches: regression.totals.mismatched,
        regression_paths: regression.endpoints.flatMap((e) =>
          e.mismatchPaths.map((p) => `${e.endpoint} ${p.path}`),
        ),
        noise_path_names: noisePaths,
        barrier: faithful.details.barrier,
        noise_samples: faithful.details.noiseSamples,
        rate,
        seconds,
        slice_ms: sliceMs,
        sample_rate: config.sampleRate ?? 1,
        max_compared_per_second: config.maxComparedPerSecond ?? null,
        budget: faithful.details.budget,
        calibration_rate: config.noise?.calibrationRate ?? 0.1,
        // A split asked for and not applied says why.
        placement:
          placement.mode === 'split'
            ? { old_cpus: placement.oldCpus, new_cpus: placement.newCpus }
            : placement.note
              ? { mode: 'shared', note: placement.note }
              : 'shared',
      };
    } finally {
      client?.close();
      await current?.close().catch(() => {});
      await converter?.stop().catch(() => {});
      await ingress?.stop().catch(() => {});
      await teardownAll((line) => out.say(`cleanup: ${line}`));
      if (ok) rmSync(logs, { recursive: true, force: true });
      else out.say(`logs of the wiki processes: ${logs}`);
    }
  },
};

/** The load generator, in its own process (see load-child.ts). */
interface Client {
  pid: number;
  run(req: PhaseRequest): Promise<PhaseResult>;
  close(): void;
}

export function startClient(): Client {
  const child = fork(fileURLToPath(new URL('./load-child.ts', import.meta.url)), [], {
    execArgv: [...TS_LOADER],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const unregister = onTeardown('load generator', async () => void child.kill(), {
    pid: child.pid ?? 0,
    signal: 'SIGTERM',
  });
  return {
    pid: child.pid ?? 0,
    run: (req) =>
      withDeadline(
        'a load phase',
        new Promise<PhaseResult>((resolve, reject) => {
          const exited = (code: number | null) => reject(new Error(`the load generator exited (${code})`));
          child.once('exit', exited);
          child.once('message', (m) => {
            child.off('exit', exited);
            resolve(m as PhaseResult);
          });
          child.send(req);
        }),
        req.seconds * 1000 + 60_000,
      ),
    close: () => {
      unregister();
      child.disconnect();
    },
  };
}

/** The ingress's mirroring as the bench drives it, through the node's control endpoint. */
interface MirrorLane {
  url: string;
  set(on: boolean): Promise<void> | undefined;
  settled(timeoutMs: number): Promise<void>;
}

async function phase(
  client: Client,
  ingress: MirrorLane,
  mirrored: boolean,
  seconds: number,
  rate: number,
  pages: number,
  runId: string,
): Promise<Phase> {
  await ingress.set(mirrored);
  const r = await client.run({
    url: ingress.url,
    workers: 8,
    rate,
    seconds,
    pages,
    runId: `rt${runId}${Date.now().toString(36)}`,
  });
  await ingress.set(false);
  return { mirrored, latencies: r.latencies, failed: r.failed, writes: r.writes };
}

type Arm = 'plain' | 'control' | 'mirrored';
const ARMS: Arm[] = ['plain', 'control', 'mirrored'];
type ArmRun = { arms: Record<Arm, number[]>; failed: number; writes: number };

/** Mirrored against both unmirrored arms pooled; control against plain (the noise floor). */
function armRatios({ arms }: ArmRun) {
  const unmirrored = [...arms.plain, ...arms.control];
  const at = (xs: number[], p: number) => percentile(xs, p);
  return {
    p99: at(arms.mirrored, 99) / at(unmirrored, 99),
    p50: at(arms.mirrored, 50) / at(unmirrored, 50),
    p99PlainMs: at(unmirrored, 99),
    p99MirroredMs: at(arms.mirrored, 99),
    noiseP99: at(arms.control, 99) / at(arms.plain, 99),
    noiseP50: at(arms.control, 50) / at(arms.plain, 50),
  };
}

function pooledP99Ratio(runs: ArmRun[]): number {
  const all = (arms: Arm[]) => runs.flatMap((r) => arms.flatMap((a) => r.arms[a]));
  return percentile(all(['mirrored']), 99) / percentile(all(['plain', 'control']), 99);
}

/**
 * One continuous load; every `sliceMs` the next arm of plain → control → mirrored takes over, and
 * each request counts for the arm in force when it was sent. Neighbours' bursts on a shared machine
 * last longer than a slice, so they land on every arm alike (separate phases would hand them to one
 * side). `control` is unmirrored like `plain`: their difference is the measurement's noise floor.
 */
async function toggledRun(
  client: Client,
  ingress: MirrorLane,
  o: { seconds: number; rate: number; pages: number; sliceMs: number; guardMs: number },
): Promise<ArmRun> {
  const switches: { at: number; arm: Arm }[] = [{ at: Date.now(), arm: 'plain' }];
  await ingress.set(false);
  // A measurement schedule, not a synchronisation.
  const timer = setInterval(() => {
    const arm = ARMS[(ARMS.indexOf(switches.at(-1)?.arm ?? 'plain') + 1) % ARMS.length] as Arm;
    void ingress.set(arm === 'mirrored');
    switches.push({ at: Date.now(), arm });
  }, o.sliceMs);
  let r: PhaseResult;
  try {
    r = await client.run({
      url: ingress.url,
      workers: 8,
      rate: o.rate,
      seconds: o.seconds,
      pages: o.pages,
      runId: `rtf${Date.now().toString(36)}`,
    });
  } finally {
    clearInterval(timer);
    await ingress.set(false);
  }
  const arms: Record<Arm, number[]> = { plain: [], control: [], mirrored: [] };
  let k = 0;
  r.sentAt.forEach((t, i) => {
    while (k + 1 < switches.length && (switches[k + 1]?.at ?? Infinity) <= t) k++;
    const s = switches[k];
    // Requests sent just after a switch are left out: the previous arm's work is still draining.
    if (!s || t - s.at < o.guardMs) return;
    arms[s.arm].push(r.latencies[i] ?? 0);
  });
  return { arms, failed: r.failed, writes: r.writes };
}

/** Waits (bounded) until the node has shipped what it queued and all of it is compared. */
async function settleMirror(
  node: IngressNode,
  test: RemoteRuntimeTest | undefined,
  timeoutMs: number,
): Promise<void> {
  const started = performance.now();
  await waitUntil(
    'the ingress node to ship its mirror queue',
    async () => {
      const s = (await node.state(2_000)) as { mirrorStats?: MirrorStats };
      return !s.mirrorStats || (s.mirrorStats.queued === 0 && s.mirrorStats.inFlight === 0)
        ? true
        : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  );
  await test?.settled(Math.max(1, timeoutMs - (performance.now() - started)));
}

function sayReport(out: Output, name: string, r: RuntimeTestReport): void {
  const t = r.totals;
  out.say(
    `  ${name}: ${t.compared} compared, ${t.mismatched} mismatched, ${t.noisy} noisy, ${t.errors} errors, ${t.skipped} skipped`,
  );
  for (const e of r.endpoints)
    out.say(
      `    ${e.endpoint}: ${e.compared} compared, ${e.mismatched} mismatched (${e.mismatchPaths.map((p) => p.path).join(', ') || '-'}), noise ${e.noisePaths.map((n) => n.path).join(', ') || '-'}`,
    );
}

function wiki(
  version: 1 | 2,
  databaseUrl: string,
  logs: string,
  env: Record<string, string>,
): Promise<AppProcess> {
  return startApp({
    name: `wiki v${version}`,
    command: [process.execPath, ...TS_LOADER, join(wikiDir, `v${version}`, 'server.ts')],
    env: { DATABASE_URL: databaseUrl, ...env },
    logFile: join(logs, `wiki-v${version}.log`),
  });
}
