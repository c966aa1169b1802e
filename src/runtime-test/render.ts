/**
 * The runtime-test report for people: a one-line summary for `imago status`, and the whole report
 * (endpoints, learned noise, mismatching paths, sample diffs) for `imago report`.
 */
import type { GateCriteria } from './config.js';
import { evaluateGate } from './gate.js';
import type { AnswerSample, RuntimeTestReport, SampleDiff } from './report.js';

export interface RuntimeTestSummary {
  endpoints: number;
  compared: number;
  mismatched: number;
  noisy: number;
  errors: number;
  skipped: number;
  gate: { pass: boolean; reasons: string[] };
  line: string;
}

export function summarize(report: RuntimeTestReport, criteria?: GateCriteria): RuntimeTestSummary {
  const t = report.totals;
  const gate = evaluateGate(report, criteria);
  const line =
    `runtime test: ${report.endpoints.length} endpoints, ${t.compared} compared, ${t.mismatched} mismatched, ` +
    `${t.noisy} noisy, ${t.errors} errors, ${t.skipped} skipped; gate ${gate.pass ? 'passes' : `blocks (${gate.reasons.length} reasons)`}`;
  return {
    endpoints: report.endpoints.length,
    compared: t.compared,
    mismatched: t.mismatched,
    noisy: t.noisy,
    errors: t.errors,
    skipped: t.skipped,
    gate,
    line,
  };
}

export function renderReport(report: RuntimeTestReport, criteria?: GateCriteria): string[] {
  const s = summarize(report, criteria);
  const lines = [s.line, `  from ${report.startedAt} to ${report.updatedAt}`];
  for (const reason of s.gate.reasons) lines.push(`  gate: ${reason}`);
  for (const [why, n] of Object.entries(report.skippedReasons)) lines.push(`  skipped ${n}: ${why}`);
  for (const e of report.endpoints) {
    const l = e.latencyMs;
    lines.push(
      '',
      `${e.endpoint}`,
      `  compared ${e.compared}  matched ${e.matched}  mismatched ${e.mismatched}  noisy ${e.noisy}  errors ${e.errors} (5xx ${e.new5xx})` +
        (e.expectedDifferences ? `  with expected differences ${e.expectedDifferences}` : ''),
      l.old.samples === 0
        ? '  latency: no paired samples yet'
        : `  latency p50/p99 ms (${l.old.samples} paired): old ${l.old.p50}/${l.old.p99}  new ${l.new.p50}/${l.new.p99}` +
            (l.new.p99Low === undefined ? '' : ` (p99 ≥ ${l.new.p99Low} at 97.5 %)`) +
            (l.p99Ratio === null ? '' : `  (p99 ×${l.p99Ratio})`),
    );
    if (e.noisePaths.length)
      lines.push(
        `  noise (old vs old): ${e.noisePaths
          .slice(0, 8)
          .map((n) => `${n.path} ${(n.rate * 100).toFixed(1)}%`)
          .join(', ')}`,
      );
    if (e.mismatchPaths.length)
      lines.push(`  mismatching paths: ${e.mismatchPaths.map((p) => `${p.path} ×${p.count}`).join(', ')}`);
    for (const sample of e.samples) lines.push(...renderSample(sample));
  }
  return lines;
}

function renderSample(s: SampleDiff): string[] {
  const out = [`  sample ${s.at}: ${s.request.method} ${s.request.url}`];
  for (const d of s.differences.slice(0, 6))
    out.push(`    ${d.path} (${d.kind}): ${short(d.old)} → ${short(d.new)}`);
  out.push(
    `    old: ${answer(s.old)}`,
    `    new: ${'error' in s.new ? `error: ${s.new.error}` : answer(s.new)}`,
  );
  if (s.oldAgain) out.push(`    old again: ${answer(s.oldAgain)}`);
  return out;
}

function answer(a: AnswerSample): string {
  return `${a.status} ${short(a.body)}`;
}

function short(v: unknown): string {
  const s = typeof v === 'string' ? v : v === undefined ? '∅' : JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}…` : s;
}
