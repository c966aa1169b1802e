/**
 * How far a p99 measured on n samples can be trusted, for the gate's latency rule. A p99 of 30
 * samples is their largest: one stall of a shared machine decides it, and the demo's gate closed on
 * such single stalls now and then. The order statistics give a distribution-free interval instead:
 * the number of samples above the true p99 is binomial (n, 0.01), so the k-th largest sample lies
 * below the true p99 with a probability read off that binomial, whatever the latencies' shape.
 *
 * With fewer than about 370 samples no sample lies above the true p99 with 97.5 % certainty: the interval
 * has no upper end there (null).
 */

const Q = 0.99;
/** Each end of a two-sided 95 % interval. */
const TAIL = 0.025;

export interface QuantileBounds {
  /** The true p99 is at least this (97.5 % confidence); the smallest sample when n is tiny. */
  low: number;
  /** The true p99 is at most this (97.5 % confidence); null when n is too small to say. */
  high: number | null;
}

/** Bounds of the p99 of the distribution `sorted` (ascending, non-empty) was drawn from. */
export function p99Bounds(sorted: readonly number[]): QuantileBounds {
  const n = sorted.length;
  // cdf[j] = P(A <= j), A = samples above the true p99 ~ Binomial(n, 1 - Q).
  const p = 1 - Q;
  let pmf = Math.pow(Q, n);
  let cdf = pmf;
  const largest = (k: number) => sorted[n - k] as number;
  // Lower end: the k-th largest, for the smallest k with P(A <= k - 1) >= 1 - TAIL.
  let lowK: number | undefined;
  // Upper end: the m-th largest, for the largest m with P(A >= m) >= 1 - TAIL, i.e. P(A <= m - 1) <= TAIL.
  let highM = 0;
  for (let j = 0; j < n; j++) {
    if (cdf <= TAIL) highM = j + 1;
    if (lowK === undefined && cdf >= 1 - TAIL) lowK = j + 1;
    if (lowK !== undefined && cdf > TAIL) break;
    pmf *= ((n - j) / (j + 1)) * (p / Q);
    cdf += pmf;
  }
  return {
    low: lowK === undefined ? (sorted[0] as number) : largest(lowK),
    high: highM === 0 ? null : largest(highM),
  };
}
