/**
 * `imago bench proxy`: Imago's ingress against nginx, both in front of the same small backend, on
 * loopback, in one run (this machine is shared and noisy, so only figures from the same run are
 * compared). Targets: direct to the backend, through Imago's ingress, through nginx (worker_processes
 * auto, upstream keep-alive, access log off), and through the issue's baseline, a minimal node:http +
 * undici proxy with Imago's process count (minimal-proxy.ts). Workloads: small JSON GET and 4 KB POST. Warm-up, then
 * alternating repetitions, medians. Installs nothing: a missing nginx or wrk is reported with the
 * command that installs it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage, ImagoError } from '../errors.js';
import type { BenchOptions, Scenario } from './scenarios.js';
import { BenchIncomplete } from './bench-incomplete.js';
import { findExecutable, findNginx } from './executables.js';
import { logExcerpt } from './log-excerpt.js';
import { runWrk, writePostScript, type WrkResult } from './proxy-wrk.js';
import { processTree, procStat } from './process-tree.js';
import {
  round,
  summarize,
  summaryLine,
  WORKLOAD_LABELS,
  type Measured,
  type Results,
  type Workload,
} from './proxy-summary.js';
import { indent, startBenchBackend, startProxy, type BenchProcess, type Target } from './proxy-targets.js';

const TARGETS: Target[] = ['direct', 'imago', 'nginx', 'minimal'];
const WORKLOADS: Workload[] = ['get', 'post'];

const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/**
 * CPU time (user + system, in seconds) a process and its descendants have used, from /proc (Linux);
 * undefined where /proc is not available. Used to report CPU per request for each target.
 */
function cpuSeconds(root: number): number | undefined {
  if (procStat(root) === undefined) return undefined;
  let ticks = 0;
  for (const st of processTree([root]).values()) ticks += st?.ticks ?? 0;
  return ticks / CLK_TCK;
}

export const proxyScenario: Scenario = {
  describe:
    'HTTP proxy throughput: direct vs Imago ingress vs nginx vs a minimal Node proxy, small JSON GET and 4 KB POST (wrk; needs nginx and wrk)',
  async run({ out, options }: BenchOptions): Promise<Record<string, unknown>> {
    const repetitions = Math.max(1, Number(options.repetitions ?? 3));
    const seconds = Math.max(1, Number(options.duration ?? 5));
    const connections = Math.max(1, Number(options.connections ?? 50));
    // Imago's default process count: one per core, as nginx's `worker_processes auto`
    // (--workers, or IMAGO_BENCH_PROXY_WORKERS, overrides it).
    const workers = Number(
      options.workers ?? process.env.IMAGO_BENCH_PROXY_WORKERS ?? availableParallelism(),
    );
    if (!Number.isInteger(workers) || workers < 1) {
      throw new ImagoError(
        `the proxy benchmark needs a positive whole number of ingress workers, not "${workers}"`,
        String(workers),
        'set IMAGO_BENCH_PROXY_WORKERS to 1, 2, … or leave it unset (one per core)',
      );
    }
    const wrk = findExecutable('wrk');
    const nginx = findNginx();
    const missing = [!wrk && 'wrk', !nginx && 'nginx'].filter(Boolean) as string[];
    if (missing.length > 0) {
      throw new ImagoError(
        `the proxy benchmark needs ${missing.join(' and ')}, which is not installed`,
        missing.join(', '),
        `install with: sudo apt-get install -y ${missing.join(' ')} (nothing is installed automatically)`,
      );
    }

    const dir = await mkdtemp(join(tmpdir(), 'imago-bench-proxy-'));
    const started: BenchProcess[] = [];
    let keepLogs = false;
    try {
      const postScript = await writePostScript(dir);
      const backend = await startBenchBackend(dir);
      started.push(backend);
      const upstream = `http://127.0.0.1:${backend.port}`;
      const proxy = async (t: Exclude<Target, 'direct'>): Promise<BenchProcess> => {
        const p = await startProxy(t, { upstream, workers, dir, nginx });
        started.push(p);
        return p;
      };
      const targets: Record<Target, BenchProcess> = {
        direct: backend,
        imago: await proxy('imago'),
        nginx: await proxy('nginx'),
        minimal: await proxy('minimal'),
      };
      const results: Results = {};
      const settings = { repetitions, seconds, connections, workers };

      /** Stops the bench, naming what failed; the figures measured until then go with it. */
      const stopBench = (message: string, subject: string, hint: string): BenchIncomplete => {
        keepLogs = true;
        const figures = summarize(results, settings);
        out.say(`figures measured until then: ${summaryLine(figures, workers)}`);
        return new BenchIncomplete(message, subject, hint, { ...figures, complete: false });
      };
      const logs = `the logs of every process the bench ran are kept in ${dir}`;
      /** What ran against each target last: a crash from a run's closing connections shows after it. */
      const lastRun = new Map<Target, string>();
      /** The target first, then the backend it forwards to, then the others. */
      const checkAlive = (t: Target, when: string, wrkError?: unknown): void => {
        const order = [targets[t], backend, ...started.filter((p) => p !== targets[t] && p !== backend)];
        for (const p of order) {
          const why = p.failure();
          if (why === undefined) continue;
          const last = lastRun.get(p.target);
          throw stopBench(
            `${p.label} died: ${why} (found ${when}; ${last ? `its last run: ${last}` : 'before its first run'})` +
              (wrkError === undefined ? '' : `; ${errorMessage(wrkError)}`) +
              `; the first error lines of its log:\n${indent(logExcerpt(p.logPath))}`,
            `${p.label}, log ${p.logPath}`,
            `its whole log is at ${p.logPath} (${logs}); a process that wrk's connections can end is a bug to fix before its figures mean anything`,
          );
        }
      };
      /** A wrk run, with the CPU the proxy (all its processes) and the backend spent per request. */
      const run = async (t: Target, w: Workload, secs: number, when: string): Promise<Measured> => {
        checkAlive(t, `before ${when}`);
        const proxyPid = t === 'direct' ? undefined : targets[t].pid;
        const p0 = proxyPid === undefined ? undefined : cpuSeconds(proxyPid);
        const b0 = cpuSeconds(backend.pid);
        let r: WrkResult;
        try {
          r = await runWrk(`http://127.0.0.1:${targets[t].port}/bench`, {
            seconds: secs,
            connections,
            threads: 1,
            script: w === 'post' ? postScript : undefined,
          });
        } catch (err) {
          checkAlive(t, `when wrk failed in ${when}`, err);
          throw stopBench(
            `wrk failed against ${targets[t].label} in ${when}: ${errorMessage(err)}`,
            `wrk against ${targets[t].label} (${WORKLOAD_LABELS[w]})`,
            `${targets[t].label} is still running (its log: ${targets[t].logPath}; ${logs}); ` +
              `check wrk alone against a server that runs: wrk -t1 -c${connections} -d2s http://127.0.0.1:<port>/`,
          );
        }
        lastRun.set(t, when);
        checkAlive(t, `after ${when}`);
        const p1 = proxyPid === undefined ? undefined : cpuSeconds(proxyPid);
        const b1 = cpuSeconds(backend.pid);
        const perReq = (a?: number, b?: number): number | undefined =>
          a === undefined || b === undefined || r.requests === 0 ? undefined : ((b - a) * 1e6) / r.requests;
        return { ...r, proxyCpuUs: perReq(p0, p1), backendCpuUs: perReq(b0, b1) };
      };

      out.say(`warming up (${TARGETS.length * WORKLOADS.length} × 2 s)`);
      for (const t of TARGETS)
        for (const w of WORKLOADS) await run(t, w, 2, `the ${WORKLOAD_LABELS[w]} warm-up of ${t}`);

      for (let rep = 0; rep < repetitions; rep++) {
        // Alternate the order so drift on a shared machine does not favour one target.
        const order = rep % 2 === 0 ? TARGETS : [...TARGETS].reverse();
        for (const w of WORKLOADS) {
          for (const t of order) {
            const r = await run(
              t,
              w,
              seconds,
              `the ${WORKLOAD_LABELS[w]} run of ${t}, rep ${rep + 1}/${repetitions}`,
            );
            (results[`${t}_${w}`] ??= []).push(r);
            out.say(
              `rep ${rep + 1}/${repetitions} ${w.padEnd(4)} ${t.padEnd(7)} ${Math.round(r.rps)} req/s p99 ${round(r.p99Ms)} ms` +
                (r.proxyCpuUs === undefined ? '' : ` proxy CPU ${Math.round(r.proxyCpuUs)} µs/req`) +
                (r.backendCpuUs === undefined ? '' : ` backend CPU ${Math.round(r.backendCpuUs)} µs/req`) +
                (r.errors ? ` errors ${r.errors}` : ''),
            );
          }
        }
      }
      // A process ended by the last run's closing connections shows only now.
      checkAlive('direct', 'after the last run');
      const summary = summarize(results, settings);
      out.say(summaryLine(summary, workers));
      return summary;
    } finally {
      for (const p of started.reverse()) await p.stop();
      if (!keepLogs) await rm(dir, { recursive: true, force: true });
    }
  },
};
