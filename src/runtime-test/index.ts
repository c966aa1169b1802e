/**
 * Runtime testing: the new universe answers the same live reads as the old one before it takes
 * over, and the answers are compared. This role owns the consistency barrier (a read reaches the new
 * universe only once conversion has applied what the old database had committed when old answered),
 * noise samples and noise learning, the differ with the plan's normalisers and expected differences,
 * endpoint grouping, the report and the switchover gate.
 *
 * It must never affect a client: it only sees copies the ingress hands over after the client has
 * been answered, and every failure here becomes a count in the report, never an exception upstream.
 * It must never send a write anywhere (the ingress mirrors reads only; the noise sample repeats a
 * read), and never let a secret from a request or answer into a report unredacted.
 *
 * This file wires the parts: budget, barrier, sampler, answer, endpoints, verdict (differ, normalise,
 * expected, paths), noise, report, redact, gate and render.
 */
import { join } from 'node:path';
import type { MirrorExchange, MirrorLimits, MirrorOptions } from '../ingress/index.js';
import { withDeadline } from '../deadline.js';
import { parseAnswer, headerRecord, type Answer } from './answer.js';
import { ConsistencyBarrier, type BarrierOptions, type CatchUpSource } from './barrier.js';
import { CompareBudget } from './budget.js';
import type { GateCriteria, RuntimeTestConfig } from './config.js';
import { Endpoints } from './endpoints.js';
import { evaluateGate, type GateVerdict } from './gate.js';
import { redactorFor, type Redactor } from './redact.js';
import { summarize, type RuntimeTestSummary } from './render.js';
import {
  Collector,
  saveReport,
  type AnswerSample,
  type RuntimeTestReport,
  type SampleDiff,
} from './report.js';
import { NoiseSampler } from './sampler.js';
import { SettledNoise } from './settled-noise.js';
import { Judge, type Verdict } from './verdict.js';

export type * from './config.js';
export type { Answer, Body } from './answer.js';
export type { CatchUpSource, BarrierOptions, BarrierStats } from './barrier.js';
export type { RuntimeTestReport, EndpointReport, SampleDiff } from './report.js';
export type { GateVerdict } from './gate.js';
export type { RuntimeTestSummary } from './render.js';
export { ConsistencyBarrier } from './barrier.js';
export { evaluateGate, DEFAULT_GATE } from './gate.js';
export { expectJson } from './expected.js';
export { summarize, renderReport } from './render.js';
export { loadReport, saveReport } from './report.js';
export { Redactor, redactorFor, redactReport } from './redact.js';
export { runtimeTestSchema } from './plan-schema.js';

/** Where a plan's runtime test report lives (the driver saves it there, `imago report` reads it). */
export function reportPath(stateDir: string, upgradeName: string): string {
  return join(stateDir, upgradeName, 'runtime-test.json');
}

export interface RuntimeTestOptions {
  config?: RuntimeTestConfig;
  /** The conversion (a Converter) whose catch-up the barrier waits on; absent = no barrier. */
  conversion?: CatchUpSource;
  barrier?: BarrierOptions;
  /** Old universe base URLs, for noise samples; empty = no noise samples (nothing learned). */
  oldUrls?: readonly string[];
  /** Saved here every `saveEveryMs` (default 2 000) and on close, for `imago report` / `status`. */
  reportFile?: string;
  saveEveryMs?: number;
}

interface PendingExchange {
  barrierError?: string;
}

/** What a sample shows of a body. */
const SAMPLE_BODY_CHARS = 2048;
/** What is redacted before the cut: enough that a value starting in the part shown ends inside it. */
const REDACTED_BODY_CHARS = 64 * 1024;

export class RuntimeTest {
  private readonly config: RuntimeTestConfig;
  private readonly barrierGate: ConsistencyBarrier | undefined;
  private readonly sampler: NoiseSampler | undefined;
  private readonly settled: SettledNoise;
  private readonly budget: CompareBudget | undefined;
  private readonly endpoints: Endpoints;
  private readonly judge: Judge;
  private readonly redactor: Redactor;
  private readonly collector: Collector;
  private readonly pending = new WeakMap<object, PendingExchange>();
  private readonly saver: NodeJS.Timeout | undefined;
  private recorded = 0;
  private judged = 0;
  private readonly calibrateEvery: number;
  private noiseSampleFailures = 0;
  private noiseSamplesTaken = 0;
  private readonly waiters: { n: number; resolve: () => void }[] = [];

  constructor(private readonly options: RuntimeTestOptions = {}) {
    this.config = options.config ?? {};
    this.barrierGate = options.conversion && new ConsistencyBarrier(options.conversion, options.barrier);
    this.sampler = options.oldUrls?.length ? new NoiseSampler(options.oldUrls) : undefined;
    this.settled = new SettledNoise(this.config.noise);
    const perSecond = this.config.maxComparedPerSecond;
    this.budget = perSecond === undefined ? undefined : new CompareBudget(perSecond);
    const rate = this.config.noise?.calibrationRate ?? 0.1;
    this.calibrateEvery = rate > 0 ? Math.max(1, Math.round(1 / rate)) : 0;
    this.endpoints = new Endpoints(this.config.routes, this.config.learnAfter);
    this.judge = new Judge(this.config);
    this.redactor = redactorFor(this.config);
    this.collector = new Collector({
      noise: this.config.noise,
      samplesPerEndpoint: this.config.samplesPerEndpoint,
    });
    if (options.reportFile) {
      this.saver = setInterval(() => this.save(), options.saveEveryMs ?? 2_000);
      this.saver.unref();
    }
  }

  /** Mirror options for startIngress: this runtime test as barrier and comparator. */
  mirrorOptions(rest: MirrorLimits = {}): MirrorOptions {
    return {
      sampleRate: this.config.sampleRate,
      concurrency: this.config.concurrency ?? 1,
      ...rest,
      barrier: this.barrier,
      compare: this.compare,
      ...(this.budget ? { admit: this.admit } : {}),
    };
  }

  /** The ingress asks this on arrival: whether the read's endpoint is within its budget. */
  readonly admit = (x: Pick<MirrorExchange, 'request' | 'primary'>): boolean => {
    // A copy of the new universe's answers is skipped by compareExchange: it spends no budget.
    if (x.primary.universe !== 'old') return true;
    const { key, learned } = this.endpoints.key(x.request.method, x.request.url);
    if (learned) this.regroup();
    return this.budget?.admit(key) ?? true;
  };

  /** Endpoint learning merged keys: what was counted under the old ones follows. */
  private regroup(): void {
    const rekey = (k: string) => this.endpoints.rekey(k);
    this.collector.regroup(rekey);
    this.budget?.rekey(rekey);
  }

  /** The ingress awaits this before sending the copy to the new universe. */
  readonly barrier = async (x: Pick<MirrorExchange, 'request' | 'primaryDoneAt'>): Promise<void> => {
    const state: PendingExchange = {};
    this.pending.set(x.request, state);
    try {
      await this.barrierGate?.wait(x.primaryDoneAt);
    } catch (err) {
      state.barrierError = err instanceof Error ? err.message : String(err);
      throw err;
    }
  };

  /** The ingress hands each pair of answers here; never throws. */
  readonly compare = async (x: MirrorExchange): Promise<void> => {
    try {
      await this.compareExchange(x);
    } catch (err) {
      this.collector.skip(`comparator error: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.recorded++;
    for (const w of this.waiters.filter((w) => this.recorded >= w.n)) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve();
    }
  };

  report(): RuntimeTestReport {
    return this.collector.report({
      barrier: this.barrierGate?.stats(),
      ...(this.budget ? { budget: this.budget.stats() } : {}),
      noiseSamples: this.sampler
        ? { taken: this.noiseSamplesTaken, failed: this.noiseSampleFailures, spared: this.settled.spared }
        : 'off',
    });
  }

  gate(criteria: GateCriteria = this.config.gate ?? {}): GateVerdict {
    return evaluateGate(this.report(), criteria);
  }

  summary(): RuntimeTestSummary {
    return summarize(this.report(), this.config.gate);
  }

  /** Exchanges handed over so far (compared, errors and skipped alike). */
  exchanges(): number {
    return this.recorded;
  }

  /** Resolves once `n` exchanges have been handed over; rejects past the deadline. */
  async whenExchanges(n: number, timeoutMs: number): Promise<void> {
    if (this.recorded >= n) return;
    await withDeadline(
      `${n} runtime-test exchanges`,
      new Promise<void>((resolve) => this.waiters.push({ n, resolve })),
      timeoutMs,
    );
  }

  save(): void {
    if (this.options.reportFile) saveReport(this.options.reportFile, this.report());
  }

  async close(): Promise<void> {
    clearInterval(this.saver);
    this.barrierGate?.close();
    await this.sampler?.close();
    this.save();
  }

  private async compareExchange(x: MirrorExchange): Promise<void> {
    // After a switch the new universe is primary and old the copy: that is not a test of the new one.
    if (x.primary.universe !== 'old') return this.collector.skip('new universe was primary');
    const state = this.pending.get(x.request);
    // Failed here, or at the mirror's deadline while still waiting (then the copy was never sent).
    if (state?.barrierError !== undefined || x.barrierError !== undefined)
      return this.collector.skip('consistency barrier not reached');
    if (this.barrierGate && !state) return this.collector.skip('consistency barrier not reached');
    // The copy's own time, not its wait for the barrier or a slot.
    const latencyNewMs = x.mirrorMs;
    const candidate = 'error' in x.mirror ? { error: x.mirror.error } : parseAnswer(x.mirror);
    const primary = parseAnswer(x.primary);
    const { method, url } = x.request;
    const { key, learned } = this.endpoints.key(method, url);
    if (learned) this.regroup();
    let verdict = this.judge.judge({ method, url, primary, candidate });
    let secondary: Answer | undefined;
    let latencyOldMs: number | undefined;
    const calibrate = this.calibrateEvery > 0 && ++this.judged % this.calibrateEvery === 0;
    if (this.sampler && (verdict.outcome === 'differs' || (calibrate && verdict.outcome === 'match'))) {
      const before = verdict.unexplained.map((d) => d.key);
      if (this.settled.spare(key, before))
        return this.collector.skip('differs only on settled noise paths; noise sample spared');
      // Sent only now that the new universe has answered: its data is then bracketed by the two old answers.
      this.noiseSamplesTaken++;
      const sample = await this.sampler.sample(x.request);
      if ('error' in sample) this.noiseSampleFailures++;
      else {
        secondary = parseAnswer(sample.answer);
        latencyOldMs = sample.latencyMs;
        verdict = this.judge.judge({ method, url, primary, candidate, secondary });
        // Resolved, for settling: explained, noisy, or within the noise learned so far (not a mismatch).
        const left = verdict.unexplained.map((d) => d.key).filter((k) => !this.collector.forgives(key, k));
        this.settled.learn(key, before, left);
      }
    }
    this.collector.record({
      endpoint: key,
      verdict,
      sample: () => this.sample(key, x, primary, candidate, secondary, verdict),
      // Paired: old and new timed on the same request, at nearly the same moment.
      latencyOldMs,
      latencyNewMs: latencyOldMs === undefined ? undefined : latencyNewMs,
    });
  }

  private sample(
    endpoint: string,
    x: MirrorExchange,
    primary: Answer,
    candidate: Answer | { error: string },
    secondary: Answer | undefined,
    verdict: Verdict,
  ): SampleDiff {
    const shown = verdict.outcome === 'error' ? [] : verdict.unexplained;
    return {
      endpoint,
      at: new Date().toISOString(),
      request: {
        method: x.request.method,
        url: this.redactor.url(x.request.url),
        headers: this.redactor.headerRecord(headerRecord(x.request.headers)),
      },
      old: this.answerSample(primary),
      new:
        'error' in candidate
          ? { error: this.redactor.text(verdict.error ?? candidate.error) }
          : this.answerSample(candidate),
      ...(secondary ? { oldAgain: this.answerSample(secondary) } : {}),
      differences: shown.slice(0, 20).map((d) => ({
        path: d.path.join('.'),
        kind: d.kind,
        ...(d.old === undefined ? {} : { old: clip(this.redactor.value(d.path.map(String), d.old)) }),
        ...(d.new === undefined ? {} : { new: clip(this.redactor.value(d.path.map(String), d.new)) }),
      })),
    };
  }

  /** Redacted whole (up to REDACTED_BODY_CHARS), then cut: a secret is never cut in half unmasked. */
  private answerSample(a: Answer): AnswerSample {
    let body: string;
    if (a.body.kind === 'binary')
      body = `<${a.body.bytes} bytes of ${a.headers['content-type'] ?? 'unknown type'}>`;
    else {
      const text = this.redactor.text(a.raw.subarray(0, REDACTED_BODY_CHARS).toString('utf8'));
      body =
        text.length > SAMPLE_BODY_CHARS || a.raw.length > REDACTED_BODY_CHARS
          ? `${text.slice(0, SAMPLE_BODY_CHARS)}…`
          : text;
    }
    return { status: a.status, headers: this.redactor.headerRecord(a.headers), body };
  }
}

/** A difference's value as shown: at most 300 characters of its JSON. */
function clip(v: unknown): unknown {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  if (s === undefined || s.length <= 300) return v;
  return `${s.slice(0, 297)}…`;
}
