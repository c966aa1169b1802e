/**
 * The switchover gate: whether the runtime test's evidence is enough to let the new universe take
 * over. Pure: it reads a report and the plan's criteria. Forcing past a failed gate is the caller's
 * decision (`imago switch --force`), and the caller records it in the journal with these reasons.
 */
import type { GateCriteria } from './config.js';
import type { RuntimeTestReport } from './report.js';

export interface GateVerdict {
  pass: boolean;
  /** Why it blocks (empty when it passes). */
  reasons: string[];
}

export const DEFAULT_GATE: Required<Omit<GateCriteria, 'endpoints'>> = {
  minComparedPerEndpoint: 50,
  maxMismatchRate: 0,
  maxNew5xx: 0,
  maxErrorRate: 0.01,
  maxLatencyRatio: 2,
};

export function evaluateGate(report: RuntimeTestReport, criteria: GateCriteria = {}): GateVerdict {
  const c = { ...DEFAULT_GATE, ...criteria };
  const reasons: string[] = [];
  const byName = new Map(report.endpoints.map((e) => [e.endpoint, e]));
  if (report.endpoints.length === 0) reasons.push('no read has been compared yet');
  for (const name of c.endpoints ?? []) {
    if (!byName.has(name)) reasons.push(`${name}: never compared (required by the plan)`);
  }
  const judged = c.endpoints
    ? report.endpoints.filter((e) => c.endpoints?.includes(e.endpoint))
    : report.endpoints;
  for (const e of judged) {
    if (e.compared < c.minComparedPerEndpoint)
      reasons.push(`${e.endpoint}: ${e.compared} compared, at least ${c.minComparedPerEndpoint} needed`);
    const rate = e.compared > 0 ? e.mismatched / e.compared : 0;
    if (e.mismatched > 0 && rate > c.maxMismatchRate)
      reasons.push(
        `${e.endpoint}: ${e.mismatched} unexpected mismatches (${pct(rate)} > ${pct(c.maxMismatchRate)})` +
          (e.mismatchPaths.length
            ? ` on ${e.mismatchPaths
                .map((p) => p.path)
                .slice(0, 3)
                .join(', ')}`
            : ''),
      );
    if (e.new5xx > c.maxNew5xx)
      reasons.push(`${e.endpoint}: the new universe answered 5xx ${e.new5xx} times`);
    const failures = e.errors - e.new5xx;
    const attempts = e.compared + e.errors;
    if (failures > 0 && failures / attempts > c.maxErrorRate)
      reasons.push(
        `${e.endpoint}: ${failures} new-universe timeouts or connection errors (${pct(failures / attempts)})`,
      );
    const ratio = e.latencyMs.p99Ratio;
    if (ratio !== null && e.latencyMs.new.samples >= c.minComparedPerEndpoint && ratio > c.maxLatencyRatio)
      reasons.push(
        `${e.endpoint}: new p99 ${e.latencyMs.new.p99} ms is ${ratio}× old ${e.latencyMs.old.p99} ms (max ${c.maxLatencyRatio}×)`,
      );
  }
  return { pass: reasons.length === 0, reasons };
}

function pct(x: number): string {
  return `${(x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1)}%`;
}
