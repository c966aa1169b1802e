/**
 * The proxy benchmark's figures from its wrk runs: medians per target and workload, Imago's and the
 * minimal proxy's ratios to nginx, p99s, CPU per request. Works on what has been measured so far, so
 * that a bench stopped by a dead proxy still reports the rest (null where nothing was measured).
 */
import { availableParallelism } from 'node:os';
import { median } from './load.js';
import type { Target } from './proxy-targets.js';
import type { WrkResult } from './proxy-wrk.js';

export type Workload = 'get' | 'post';
export const WORKLOAD_LABELS: Record<Workload, string> = { get: 'GET', post: '4 KB POST' };

/** A wrk run, with the CPU the proxy (all its processes) and the backend spent per request. */
export interface Measured extends WrkResult {
  proxyCpuUs?: number;
  backendCpuUs?: number;
}

export type Results = Partial<Record<`${Target}_${Workload}`, Measured[]>>;

export const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

export function summarize(
  results: Results,
  o: { repetitions: number; seconds: number; connections: number; workers: number },
): Record<string, number | string> {
  const med = (t: Target, w: Workload, k: 'rps' | 'p99Ms' | 'proxyCpuUs' | 'backendCpuUs'): number => {
    const runs = results[`${t}_${w}`] ?? [];
    return runs.length === 0 ? Number.NaN : median(runs.map((r) => r[k] ?? Number.NaN));
  };
  const errors = Object.values(results)
    .flat()
    .reduce((a, r) => a + r.errors, 0);
  const vsNginx = (t: Target, w: Workload): number => med(t, w, 'rps') / med('nginx', w, 'rps');
  /** The worse of GET and POST. */
  const worstP99 = (t: Target): number => round(Math.max(med(t, 'get', 'p99Ms'), med(t, 'post', 'p99Ms')));
  const ratioGet = vsNginx('imago', 'get');
  const ratioPost = vsNginx('imago', 'post');
  return {
    scenario: 'proxy',
    repetitions: o.repetitions,
    duration_s: o.seconds,
    connections: o.connections,
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
    imago_processes: o.workers,
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
}

/** The summary for people; "—" where nothing was measured. */
export function summaryLine(s: Record<string, number | string>, workers: number): string {
  const f = (k: string): string => {
    const v = s[k];
    return typeof v === 'number' && Number.isNaN(v) ? '—' : String(v);
  };
  return (
    `GET: direct ${f('direct_rps')}, imago ${f('imago_rps')}, nginx ${f('nginx_rps')} req/s; ` +
    `POST 4 KB: direct ${f('direct_post_rps')}, imago ${f('imago_post_rps')}, nginx ${f('nginx_post_rps')}; ` +
    `ratio vs nginx ${f('ratio_vs_nginx')} (minimal Node proxy ${f('minimal_ratio_vs_nginx')}); p99 imago ${f('imago_p99_ms')} ms, nginx ${f('nginx_p99_ms')} ms; ` +
    `CPU per GET: imago ${f('imago_cpu_us_per_req')} µs (${workers > 1 ? `${workers} workers + primary` : '1 process'}), nginx ${f('nginx_cpu_us_per_req')} µs, minimal ${f('minimal_cpu_us_per_req')} µs`
  );
}
