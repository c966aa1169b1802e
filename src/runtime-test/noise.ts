/**
 * Noise learning, per endpoint: the paths on which the old universe disagrees with itself (the
 * client's answer versus the noise sample sent after the new universe answered). Time stamps, ids
 * handed out per request and data changed meanwhile all show up here. A difference from the new
 * universe on such a path is forgiven only while it happens no more often than the old side's own
 * disagreement (Diffy's idea: a difference counts beyond noise, not instead of it).
 */
import type { NoiseOptions } from './config.js';

export interface NoisyPath {
  path: string;
  /**
   * Share of judged exchanges in which the old universe was seen disagreeing with itself on this
   * path. A lower bound when noise samples are taken only for differing answers (the default).
   */
  rate: number;
  occurrences: number;
}

/**
 * Disagreements of the old side with itself before a path counts as noise. Two are too few: on a path
 * that edits also move (a page's latest comment), two edits landing between a read and its noise
 * sample can forgive a real regression's first two differences there and open the gate early.
 */
export const DEFAULT_MIN_OCCURRENCES = 5;

export class NoiseLearner {
  /** Exchanges judged (the denominator of noise rates). */
  samples = 0;
  /** Path key → exchanges where old disagreed with itself there. */
  readonly noise = new Map<string, number>();
  /** Path key → exchanges where the new universe differed there without an explanation. */
  readonly unexplained = new Map<string, number>();

  private readonly minOccurrences: number;

  constructor(private readonly options: NoiseOptions = {}) {
    this.minOccurrences = options.minOccurrences ?? DEFAULT_MIN_OCCURRENCES;
  }

  /** One exchange's evidence: where old disagreed with itself, where new differed unexplained. */
  observe(noiseKeys: Iterable<string>, unexplainedKeys: Iterable<string>): void {
    this.samples++;
    for (const k of new Set(noiseKeys)) this.noise.set(k, (this.noise.get(k) ?? 0) + 1);
    for (const k of new Set(unexplainedKeys)) this.unexplained.set(k, (this.unexplained.get(k) ?? 0) + 1);
  }

  /** Whether the new universe's unexplained differences on `key` stay within the old side's noise. */
  forgives(key: string): boolean {
    const noise = this.noise.get(key) ?? 0;
    if (noise < this.minOccurrences) return false;
    return (this.unexplained.get(key) ?? 0) <= noise * (this.options.factor ?? 1);
  }

  noisyPaths(): NoisyPath[] {
    return [...this.noise]
      .filter(([, n]) => n >= this.minOccurrences)
      .map(([path, n]) => ({ path, occurrences: n, rate: this.samples ? n / this.samples : 0 }))
      .sort((a, b) => b.rate - a.rate || a.path.localeCompare(b.path));
  }

  merge(other: NoiseLearner): void {
    this.samples += other.samples;
    for (const [k, n] of other.noise) this.noise.set(k, (this.noise.get(k) ?? 0) + n);
    for (const [k, n] of other.unexplained) this.unexplained.set(k, (this.unexplained.get(k) ?? 0) + n);
  }
}
