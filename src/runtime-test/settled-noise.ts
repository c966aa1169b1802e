/**
 * Noise samples spared where the old universe's noise is settled. Each noise sample is one more read
 * the old universe serves while its clients wait on it, and most of them go to the same few paths: a
 * list that moves with every edit differs on nearly every comparison, and its noise sample explains
 * the difference nearly every time. Once the samples have resolved (explained, or shown to be the old
 * side's own noise) nearly all of the differences seen on a path, a new difference confined to such
 * paths gets its sample only every n-th time; the others are skipped, not counted as compared.
 *
 * What this keeps: the sampled differences are judged as before and go on feeding the noise learner
 * and these counts, so a new universe that differs on a settled path more than the old side does is
 * still found (more slowly, by the factor n), and the path stops being settled as soon as its
 * samples stop resolving. A skipped exchange never counts as a match.
 */

export interface SettledNoiseOptions {
  /** Sample one in this many differences confined to settled paths. Default 4; 1 samples all. */
  resampleEvery?: number;
  /** Differences sampled on a path before it can be settled. Default 20. */
  settleAfter?: number;
}

/** Share of a path's sampled differences its samples must have resolved for it to be settled. */
const SETTLED_SHARE = 0.95;

interface PathCounts {
  /** Differences on this path that went to a noise sample. */
  sampled: number;
  /** Of those, the ones not left a mismatch: explained, noisy, or within the noise learned there. */
  resolved: number;
}

export class SettledNoise {
  private readonly every: number;
  private readonly after: number;
  /** `endpoint \0 path key` → counts; one entry per path, so it stops growing once paths are known. */
  private readonly paths = new Map<string, PathCounts>();
  private readonly turns = new Map<string, number>();
  /** Noise samples not taken. */
  spared = 0;

  constructor(options: SettledNoiseOptions = {}) {
    this.every = Math.max(1, Math.floor(options.resampleEvery ?? 4));
    this.after = Math.max(1, options.settleAfter ?? 20);
  }

  /** Whether this difference (its unexplained path keys before any sample) may go without a sample. */
  spare(endpoint: string, keys: readonly string[]): boolean {
    if (this.every === 1 || keys.length === 0 || !keys.every((k) => this.settled(endpoint, k))) return false;
    const turn = (this.turns.get(endpoint) ?? 0) + 1;
    this.turns.set(endpoint, turn);
    if (turn % this.every === 0) return false;
    this.spared++;
    return true;
  }

  /** What one sample did: `before` the difference's keys without it, `after` those still counting as a mismatch. */
  learn(endpoint: string, before: readonly string[], after: readonly string[]): void {
    for (const k of new Set(before)) {
      const id = `${endpoint}\0${k}`;
      let c = this.paths.get(id);
      if (!c) this.paths.set(id, (c = { sampled: 0, resolved: 0 }));
      c.sampled++;
      if (!after.includes(k)) c.resolved++;
    }
  }

  private settled(endpoint: string, key: string): boolean {
    const c = this.paths.get(`${endpoint}\0${key}`);
    return c !== undefined && c.sampled >= this.after && c.resolved >= SETTLED_SHARE * c.sampled;
  }
}
