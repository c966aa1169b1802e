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
import { ImagoError } from '../errors.js';
import type { BenchOptions, Scenario } from './scenarios.js';
import { findExecutable, findNginx } from './executables.js';
import { median } from './load.js';
import { runWrk, writePostScript, type WrkResult } from './proxy-wrk.js';
import { processTree, procStat } from './process-tree.js';
import { startBenchBackend, startProxy, type BenchProcess, type Target } from './proxy-targets.js';

type Workload = 'get' | 'post';
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

const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

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
      const pids: Record<Target, number | undefined> = {
        direct: undefined,
        imago: targets.imago.pid,
        nginx: targets.nginx.pid,
        minimal: targets.minimal.pid,
      };
      /** A wrk run, with the CPU the proxy (all its processes) and the backend spent per request. */
      const run = async (
        t: Target,
        w: Workload,
        secs: number,
      ): Promise<WrkResult & { proxyCpuUs?: number; backendCpuUs?: number }> => {
        const proxyPid = pids[t];
        const p0 = proxyPid === undefined ? undefined : cpuSeconds(proxyPid);
        const b0 = cpuSeconds(backend.pid);
        const r = await runWrk(`http://127.0.0.1:${targets[t].port}/bench`, {
          seconds: secs,
          connections,
          threads: 1,
          script: w === 'post' ? postScript : undefined,
        });
        const p1 = proxyPid === undefined ? undefined : cpuSeconds(proxyPid);
        const b1 = cpuSeconds(backend.pid);
        const perReq = (a?: number, b?: number): number | undefined =>
          a === undefined || b === undefined || r.requests === 0 ? undefined : ((b - a) * 1e6) / r.requests;
        return { ...r, proxyCpuUs: perReq(p0, p1), backendCpuUs: perReq(b0, b1) };
      };

      out.say(`warming up (${TARGETS.length * WORKLOADS.length} × 2 s)`);
      for (const t of TARGETS) for (const w of WORKLOADS) await run(t, w, 2);

      const results: Record<string, (WrkResult & { proxyCpuUs?: number; backendCpuUs?: number })[]> = {};
      for (let rep = 0; rep < repetitions; rep++) {
        // Alternate the order so drift on a shared machine does not favour one target.
        const order = rep % 2 === 0 ? TARGETS : [...TARGETS].reverse();
        for (const w of WORKLOADS) {
          for (const t of order) {
            const r = await run(t, w, seconds);
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
      const med = (t: Target, w: Workload, k: 'rps' | 'p99Ms' | 'proxyCpuUs' | 'backendCpuUs'): number =>
        median((results[`${t}_${w}`] ?? []).map((r) => r[k] ?? Number.NaN));
      const errors = Object.values(results)
        .flat()
        .reduce((a, r) => a + r.errors, 0);
      const vsNginx = (t: Target, w: Workload): number => med(t, w, 'rps') / med('nginx', w, 'rps');
      /** The worse of GET and POST. */
      const worstP99 = (t: Target): number =>
        round(Math.max(med(t, 'get', 'p99Ms'), med(t, 'post', 'p99Ms')));
      const ratioGet = vsNginx('imago', 'get');
      const ratioPost = vsNginx('imago', 'post');
      const summary = {
        scenario: 'proxy',
        repetitions,
        duration_s: seconds,
        connections,
        direct_rps: Math.round(med('direct', 'get', 'rps')),
        imago_rps: Math.round(med('imago', 'get', 'rps')),
        nginx_rps: Math.round(med('nginx', 'get', 'rps')),
        direct_post_rps: Math.round(med('direct', 'post', 'rps')),
        imago_post_rps: Math.round(med('imago', 'post', 'rps')),
        nginx_post_rps: Math.round(med('nginx', 'post', 'rps')),
        ratio_vs_nginx_get: round(ratioGet, 3),
        ratio_vs_nginx_post: round(ratioPost, 3),
        ratio_vs_nginx: round(Math.min(ratioGet, ratioPost), 3),
        imago_p99_ms: worstP99('imago'),
        nginx_p99_ms: worstP99('nginx'),
        direct_p99_ms: worstP99('direct'),
        // The issue's baseline, same process count as Imago (minimal-proxy.ts): what any Node proxy gets here.
        minimal_rps: Math.round(med('minimal', 'get', 'rps')),
        minimal_post_rps: Math.round(med('minimal', 'post', 'rps')),
        minimal_ratio_vs_nginx: round(Math.min(vsNginx('minimal', 'get'), vsNginx('minimal', 'post')), 3),
        minimal_p99_ms: worstP99('minimal'),
        imago_processes: workers,
        nginx_workers: availableParallelism(),
        // CPU (user + system, all processes) per request, medians; NaN where /proc is unavailable.
        imago_cpu_us_per_req: Math.round(med('imago', 'get', 'proxyCpuUs')),
        imago_post_cpu_us_per_req: Math.round(med('imago', 'post', 'proxyCpuUs')),
        nginx_cpu_us_per_req: Math.round(med('nginx', 'get', 'proxyCpuUs')),
        nginx_post_cpu_us_per_req: Math.round(med('nginx', 'post', 'proxyCpuUs')),
        minimal_cpu_us_per_req: Math.round(med('minimal', 'get', 'proxyCpuUs')),
        minimal_post_cpu_us_per_req: Math.round(med('minimal', 'post', 'proxyCpuUs')),
        backend_cpu_us_per_req: Math.round(med('direct', 'get', 'backendCpuUs')),
        errors,
      };
      out.say(
        `GET: direct ${summary.direct_rps}, imago ${summary.imago_rps}, nginx ${summary.nginx_rps} req/s; ` +
          `POST 4 KB: direct ${summary.direct_post_rps}, imago ${summary.imago_post_rps}, nginx ${summary.nginx_post_rps}; ` +
          `ratio vs nginx ${summary.ratio_vs_nginx} (minimal Node proxy ${summary.minimal_ratio_vs_nginx}); p99 imago ${summary.imago_p99_ms} ms, nginx ${summary.nginx_p99_ms} ms; ` +
          `CPU per GET: imago ${summary.imago_cpu_us_per_req} µs (${workers > 1 ? `${workers} workers + primary` : '1 process'}), nginx ${summary.nginx_cpu_us_per_req} µs, minimal ${summary.minimal_cpu_us_per_req} µs`,
      );
      return summary;
    } finally {
      for (const p of started.reverse()) await p.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};
