/**
 * The runtime test's report: per endpoint compared / matched / mismatched / noisy / errors, latency
 * of old versus new on the same requests at the same moment, the noisy paths learned (apart), the
 * paths that mismatched and sample diffs with the request and the answers (redacted upstream).
 * Collected in memory, saved as JSON for `imago report` and `imago status`.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { NoiseOptions } from './config.js';
import { NoiseLearner, type NoisyPath } from './noise.js';
import { p99Bounds } from './quantile-bounds.js';
import type { Verdict } from './verdict.js';

export interface AnswerSample {
  status: number;
  headers: Record<string, string>;
  /** At most 2 KiB of the body. */
  body: string;
}

export interface SampleDiff {
  endpoint: string;
  at: string;
  request: { method: string; url: string; headers: Record<string, string> };
  old: AnswerSample;
  new: AnswerSample | { error: string };
  /** The noise sample (old universe again), when taken. */
  oldAgain?: AnswerSample;
  differences: { path: string; kind: string; old?: unknown; new?: unknown }[];
}

export interface LatencySummary {
  p50: number;
  p99: number;
  samples: number;
  /** The largest sample. (This and the bounds are absent from reports of earlier versions.) */
  max?: number;
  /** 95 % interval of the true p99 (quantile-bounds.ts); high null when too few samples to bound it. */
  p99Low?: number;
  p99High?: number | null;
}

export interface EndpointReport {
  endpoint: string;
  /** Exchanges compared: matched + mismatched + noisy. */
  compared: number;
  matched: number;
  /** Unexpected differences beyond noise. */
  mismatched: number;
  /** Differences only where the old universe disagrees with itself. */
  noisy: number;
  /** New universe failed: 5xx (where old did not), timeouts, connection errors. */
  errors: number;
  new5xx: number;
  /** Matched, with differences the plan declared as expected. */
  expectedDifferences: number;
  latencyMs: { old: LatencySummary; new: LatencySummary; p99Ratio: number | null };
  noisePaths: NoisyPath[];
  mismatchPaths: { path: string; count: number }[];
  samples: SampleDiff[];
}

export interface RuntimeTestReport {
  startedAt: string;
  updatedAt: string;
  totals: {
    compared: number;
    matched: number;
    mismatched: number;
    noisy: number;
    errors: number;
    new5xx: number;
    /** Mirrored reads not compared: barrier failed, or the new universe was the primary. */
    skipped: number;
  };
  skippedReasons: Record<string, number>;
  endpoints: EndpointReport[];
  /** Extra figures from the parts (barrier, mirror queue), for people. */
  details: Record<string, unknown>;
}

const MAX_SIGNATURES = 200;
const SAMPLES_PER_SIGNATURE = 2;

class Reservoir {
  private readonly values: number[] = [];
  private next = 0;
  constructor(private readonly size = 1024) {}
  add(v: number): void {
    if (this.values.length < this.size) this.values.push(v);
    else this.values[this.next++ % this.size] = v;
  }
  merge(o: Reservoir): void {
    for (const v of o.values) this.add(v);
  }
  summary(): LatencySummary {
    const s = [...this.values].sort((a, b) => a - b);
    const at = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] ?? 0;
    const summary = { p50: round(at(0.5)), p99: round(at(0.99)), samples: s.length };
    if (s.length === 0) return summary;
    const { low, high } = p99Bounds(s);
    return {
      ...summary,
      max: round(s[s.length - 1] ?? 0),
      p99Low: round(low),
      p99High: high === null ? null : round(high),
    };
  }
}

interface Signature {
  keys: string[];
  count: number;
  samples: SampleDiff[];
}

class EndpointStats {
  matched = 0;
  noisy = 0;
  errors = 0;
  new5xx = 0;
  expected = 0;
  readonly signatures = new Map<string, Signature>();
  readonly errorSamples: SampleDiff[] = [];
  readonly latencyOld = new Reservoir();
  readonly latencyNew = new Reservoir();
  constructor(readonly noise: NoiseLearner) {}

  merge(o: EndpointStats): void {
    this.matched += o.matched;
    this.noisy += o.noisy;
    this.errors += o.errors;
    this.new5xx += o.new5xx;
    this.expected += o.expected;
    for (const [sig, s] of o.signatures) this.addSignature(sig, s.keys, s.count, s.samples);
    this.errorSamples.push(...o.errorSamples.slice(0, Math.max(0, 2 - this.errorSamples.length)));
    this.latencyOld.merge(o.latencyOld);
    this.latencyNew.merge(o.latencyNew);
    this.noise.merge(o.noise);
  }

  addSignature(sig: string, keys: string[], count: number, samples: SampleDiff[]): void {
    // Past the cap, new shapes of difference share one bucket that noise never forgives.
    const key = this.signatures.has(sig) || this.signatures.size < MAX_SIGNATURES ? sig : '(other)';
    const s = this.signatures.get(key) ?? { keys: key === sig ? keys : ['(other)'], count: 0, samples: [] };
    s.count += count;
    for (const sample of samples) if (s.samples.length < SAMPLES_PER_SIGNATURE) s.samples.push(sample);
    this.signatures.set(key, s);
  }
}

export interface Observation {
  endpoint: string;
  verdict: Verdict;
  /** Built only when the exchange may be shown (a difference or an error). */
  sample: () => SampleDiff;
  latencyOldMs?: number;
  latencyNewMs?: number;
}

export class Collector {
  private readonly endpoints = new Map<string, EndpointStats>();
  private readonly skips: Record<string, number> = {};
  private readonly startedAt = new Date().toISOString();

  constructor(private readonly options: { noise?: NoiseOptions; samplesPerEndpoint?: number } = {}) {}

  record(o: Observation): void {
    const e = this.stats(o.endpoint);
    const v = o.verdict;
    if (o.latencyOldMs !== undefined) e.latencyOld.add(o.latencyOldMs);
    if (o.latencyNewMs !== undefined) e.latencyNew.add(o.latencyNewMs);
    if (v.outcome === 'error') {
      e.errors++;
      if (v.new5xx) e.new5xx++;
      if (e.errorSamples.length < 2) e.errorSamples.push(o.sample());
      return;
    }
    e.noise.observe(
      v.noiseKeys,
      v.unexplained.map((d) => d.key),
    );
    if ((v.expected.length > 0 || v.mapped) && v.outcome === 'match') e.expected++;
    if (v.outcome === 'match') e.matched++;
    else if (v.outcome === 'noisy') e.noisy++;
    else {
      const keys = [...new Set(v.unexplained.map((d) => d.key))].sort();
      const sig = keys.join('|');
      const known = e.signatures.get(sig);
      e.addSignature(
        sig,
        keys,
        1,
        known && known.samples.length >= SAMPLES_PER_SIGNATURE ? [] : [o.sample()],
      );
    }
  }

  /** Whether the endpoint's learned noise forgives unexplained differences on this path key now. */
  forgives(endpoint: string, key: string): boolean {
    return this.endpoints.get(endpoint)?.noise.forgives(key) ?? false;
  }

  skip(reason: string): void {
    this.skips[reason] = (this.skips[reason] ?? 0) + 1;
  }

  /** Regroups endpoints after route learning made a parameter of what were separate paths. */
  regroup(rekey: (key: string) => string): void {
    for (const [key, stats] of [...this.endpoints]) {
      const to = rekey(key);
      if (to === key) continue;
      this.endpoints.delete(key);
      const into = this.endpoints.get(to);
      if (into) into.merge(stats);
      else this.endpoints.set(to, stats);
    }
  }

  report(details: Record<string, unknown> = {}): RuntimeTestReport {
    const endpoints = [...this.endpoints].map(([name, e]) => this.endpointReport(name, e));
    endpoints.sort((a, b) => a.endpoint.localeCompare(b.endpoint));
    const sum = (f: (e: EndpointReport) => number) => endpoints.reduce((n, e) => n + f(e), 0);
    return {
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      totals: {
        compared: sum((e) => e.compared),
        matched: sum((e) => e.matched),
        mismatched: sum((e) => e.mismatched),
        noisy: sum((e) => e.noisy),
        errors: sum((e) => e.errors),
        new5xx: sum((e) => e.new5xx),
        skipped: Object.values(this.skips).reduce((a, b) => a + b, 0),
      },
      skippedReasons: { ...this.skips },
      endpoints,
      details,
    };
  }

  private stats(endpoint: string): EndpointStats {
    let e = this.endpoints.get(endpoint);
    if (!e) this.endpoints.set(endpoint, (e = new EndpointStats(new NoiseLearner(this.options.noise))));
    return e;
  }

  private endpointReport(endpoint: string, e: EndpointStats): EndpointReport {
    let mismatched = 0;
    let forgiven = 0;
    const paths = new Map<string, number>();
    const samples: SampleDiff[] = [];
    for (const s of e.signatures.values()) {
      // A mismatch counts unless every path it differs on is within that path's learned noise.
      if (s.keys.every((k) => e.noise.forgives(k))) {
        forgiven += s.count;
        continue;
      }
      mismatched += s.count;
      for (const k of s.keys) if (!e.noise.forgives(k)) paths.set(k, (paths.get(k) ?? 0) + s.count);
      samples.push(...s.samples);
    }
    const limit = this.options.samplesPerEndpoint ?? 5;
    const old = e.latencyOld.summary();
    const neu = e.latencyNew.summary();
    const noisy = e.noisy + forgiven;
    return {
      endpoint,
      compared: e.matched + mismatched + noisy,
      matched: e.matched,
      mismatched,
      noisy,
      errors: e.errors,
      new5xx: e.new5xx,
      expectedDifferences: e.expected,
      latencyMs: {
        old,
        new: neu,
        p99Ratio: old.samples && neu.samples && old.p99 > 0 ? round(neu.p99 / old.p99) : null,
      },
      noisePaths: e.noise.noisyPaths().map((n) => ({ ...n, rate: round(n.rate, 4) })),
      mismatchPaths: [...paths].map(([path, count]) => ({ path, count })).sort((a, b) => b.count - a.count),
      samples: [...samples.slice(0, limit), ...e.errorSamples].slice(0, limit),
    };
  }
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Writes the report where `imago report` and `imago status` read it (atomically: write, rename). */
export function saveReport(file: string, report: RuntimeTestReport): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  // Samples are real requests and answers (redacted): readable by the upgrade's operator only.
  writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

export function loadReport(file: string): RuntimeTestReport {
  return JSON.parse(readFileSync(file, 'utf8')) as RuntimeTestReport;
}
