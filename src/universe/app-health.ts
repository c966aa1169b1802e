/**
 * An app's health check, as the plan states it: `GET <healthPath>` answered with a status in
 * `healthStatus` (default 2xx), within a second. One rule wherever Imago asks an app whether it
 * is up: the new app while it starts, an app given by URL before it is used, a resumed driver's app.
 */
import { request } from 'undici';
import { errorMessage } from '../errors.js';

/** Status codes from..to, both included. */
export interface StatusRange {
  from: number;
  to: number;
}

export interface AppHealth {
  /** Path asked of the app, e.g. /healthz (after the app URL's own path prefix). */
  path: string;
  /** Status codes that mean healthy. */
  status: readonly StatusRange[];
}

export const DEFAULT_APP_HEALTH: AppHealth = { path: '/healthz', status: [{ from: 200, to: 299 }] };

/**
 * `healthStatus` as a plan writes it: a code (`200`), a range (`"200-399"`), or a list of either
 * (`[200, "301-302"]`). Throws an Error whose message says what was expected.
 */
export function parseStatusRanges(spec: string | number | readonly (string | number)[]): StatusRange[] {
  const parts = typeof spec === 'string' || typeof spec === 'number' ? [spec] : spec;
  if (parts.length === 0) throw new Error('expected at least one status code or range');
  return parts.map((part) => {
    const m = /^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$/.exec(String(part));
    const from = Number(m?.[1]);
    const to = m?.[2] === undefined ? from : Number(m[2]);
    if (!m || from < 100 || to > 599 || from > to)
      throw new Error(
        `expected a status code or range from 100 to 599 such as 200 or "200-399", not ${JSON.stringify(part)}`,
      );
    return { from, to };
  });
}

/** The ranges as a plan would write them: `200-299`, `200-299, 304`. */
export function describeStatus(status: readonly StatusRange[]): string {
  return status.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)).join(', ');
}

export interface HealthAnswer {
  healthy: boolean;
  /** What the check saw, for a message: `GET http://…/healthz answered 404 (healthy: 200-299)`. */
  seen: string;
}

/** One health check of the app at `url`: never throws (a refused connection is an unhealthy answer). */
export async function checkHealth(url: string, health: AppHealth, timeoutMs = 1_000): Promise<HealthAnswer> {
  const target = joinPath(url, health.path);
  try {
    const res = await request(target, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    await res.body.dump();
    const healthy = health.status.some((r) => res.statusCode >= r.from && res.statusCode <= r.to);
    return {
      healthy,
      seen: `GET ${target} answered ${res.statusCode} (healthy: ${describeStatus(health.status)})`,
    };
  } catch (err) {
    return { healthy: false, seen: `GET ${target} failed: ${errorMessage(err)}` };
  }
}

/** Polls until healthy or `ms` have passed: one slow answer must not count as a dead app. */
export async function healthyWithin(url: string, health: AppHealth, ms: number): Promise<HealthAnswer> {
  const end = performance.now() + ms;
  for (;;) {
    const answer = await checkHealth(url, health, Math.min(1_000, Math.max(1, end - performance.now())));
    const left = end - performance.now();
    if (answer.healthy || left <= 0) return answer;
    await new Promise((resolve) => setTimeout(resolve, Math.min(250, left)));
  }
}

/** The path appended to the URL's own path prefix (an app served under /api keeps /api). */
function joinPath(url: string, path: string): string {
  const base = new URL(url);
  return new URL(`${base.pathname.replace(/\/+$/, '')}${path}`, base).toString();
}

/** The health check a plan's app states (`healthPath`, `healthStatus`; defaults filled in). */
export function appHealth(app: { healthPath: string; healthStatus: readonly StatusRange[] }): AppHealth {
  return { path: app.healthPath, status: app.healthStatus };
}
