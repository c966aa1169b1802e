/**
 * The verdict on one exchange. Three answers to one read: the old universe's to the client
 * (primary), the new universe's after the consistency barrier (candidate), and the old universe's
 * again once the candidate has answered (secondary, the noise sample). The barrier makes the
 * candidate's data at least as new as the primary's, and sending the secondary afterwards makes it
 * at least as new as the candidate's, so for data read from the database
 *   primary ≤ candidate ≤ secondary.
 * A candidate difference is then: expected (declared by the plan), explained (the candidate agrees
 * with the secondary: data changed meanwhile), noisy (old disagreed with itself there, or anywhere in
 * the same array element), or
 * unexplained — the only kind that can make a mismatch, and only beyond learned noise (report.ts).
 */
import type { Answer } from './answer.js';
import type { ExpectedDifference, Normaliser, RuntimeTestConfig } from './config.js';
import { diffViews, type Difference } from './differ.js';
import { compileScope } from './endpoints.js';
import { expectedAnswer, isDeclaration, isDeclared, isMapping } from './expected.js';
import { normalise, type View } from './normalise.js';
import { enclosingElement, overlaps } from './paths.js';

export interface ExchangeInput {
  method: string;
  url: string;
  primary: Answer;
  candidate: Answer | { error: string };
  /** The noise sample; absent when it could not be taken. */
  secondary?: Answer;
}

export type Outcome = 'match' | 'noisy' | 'differs' | 'error';

export interface Verdict {
  outcome: Outcome;
  /** Why the new side failed: its error, or its 5xx status. */
  error?: string;
  /** The new universe answered 5xx where the old one did not. */
  new5xx: boolean;
  expected: Difference[];
  explained: Difference[];
  noisy: Difference[];
  unexplained: Difference[];
  /** A mapping declared by the plan turned the old answer into the expected new one. */
  mapped: boolean;
  /** Paths (generalised) where the old universe disagreed with itself in this exchange. */
  noiseKeys: string[];
  sampled: boolean;
}

interface Scoped<T> {
  item: T;
  in: (method: string, url: string) => boolean;
}

export class Judge {
  private readonly compareHeaders: string[];

  private readonly normalisers: Scoped<Normaliser>[];
  private readonly expectations: Scoped<ExpectedDifference>[];

  constructor(config: RuntimeTestConfig) {
    this.compareHeaders = (config.compareHeaders ?? ['content-type']).map((h) => h.toLowerCase());
    const scoped = <T extends { endpoint?: string }>(items: readonly T[] = []): Scoped<T>[] =>
      items.map((item) => ({ item, in: compileScope(item.endpoint) }));
    this.normalisers = scoped(config.normalise);
    this.expectations = scoped(config.expected);
  }

  judge(input: ExchangeInput): Verdict {
    const none: Omit<Verdict, 'outcome'> = {
      new5xx: false,
      mapped: false,
      expected: [],
      explained: [],
      noisy: [],
      unexplained: [],
      noiseKeys: [],
      sampled: input.secondary !== undefined,
    };
    const { candidate, primary, secondary } = input;
    if ('error' in candidate) return { ...none, outcome: 'error', error: candidate.error };
    if (candidate.status >= 500 && primary.status < 500)
      return { ...none, outcome: 'error', new5xx: true, error: `new universe answered ${candidate.status}` };

    const normalisers = this.normalisers.filter((n) => n.in(input.method, input.url)).map((n) => n.item);
    const expectations = this.expectations.filter((n) => n.in(input.method, input.url)).map((n) => n.item);
    const mappings = expectations.filter(isMapping);
    const declared = expectations.filter(isDeclaration);
    const skipBody = primary.truncated || candidate.truncated || (secondary?.truncated ?? false);
    const request = { method: input.method, url: input.url };
    const view = (a: Answer, mapped: boolean): View =>
      normalise(this.view(mapped ? expectedAnswer(a, request, mappings) : a, skipBody), normalisers);

    const p = view(primary, true);
    const c = view(candidate, false);
    const all = diffViews(p, c, normalisers);
    const result = {
      ...none,
      mapped: mappings.length > 0 && expectedAnswer(primary, request, mappings) !== primary,
    };
    const left = all.filter((d) => !(isDeclared(d, declared) && result.expected.push(d)));
    // Both old answers go through the mapping, so old-vs-old shows only the old side's own noise.
    // It is learned on every sampled exchange, matching or not, so that its rate means something.
    const s = secondary && view(secondary, true);
    const noise = s ? diffViews(p, s, normalisers) : [];
    result.noiseKeys = [...new Set(noise.map((d) => d.key))];
    if (left.length === 0) return { ...result, outcome: 'match' };

    const againstSecondary = s ? diffViews(s, c, normalisers).filter((d) => !isDeclared(d, declared)) : left;
    for (const d of left) {
      if (!againstSecondary.some((x) => overlaps(x.path, d.path))) result.explained.push(d);
      // Old disagreed with itself anywhere in the element: at this index it may not hold the same record.
      else if (noise.some((x) => overlaps(x.path, enclosingElement(d.path)))) result.noisy.push(d);
      else result.unexplained.push(d);
    }
    const outcome = result.unexplained.length > 0 ? 'differs' : result.noisy.length > 0 ? 'noisy' : 'match';
    return { ...result, outcome };
  }

  private view(a: Answer, skipBody: boolean): View {
    const headers: Record<string, string> = {};
    for (const name of this.compareHeaders) {
      const v = a.headers[name];
      if (v !== undefined) headers[name] = v;
    }
    return { status: a.status, headers, body: skipBody ? { kind: 'empty' } : a.body };
  }
}
