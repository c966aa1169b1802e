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
  /** The true p99 is at least this (97.5 % confidence). */
  low: number;
  /** The true p99 is at most this (97.5 % confidence); null when n is too small to say. */
  high: number | null;
}

/** Bounds of the p99 of the distribution `sorted` (ascending, non-empty) was drawn from. */
export function p99Bounds(sorted: readonly number[]): QuantileBounds {
  const n = sorted.length;
  if (n === 0) throw new RangeError('p99 bounds need at least one sample');
  // cdf = P(A <= j), A = samples above the true p99 ~ Binomial(n, 1 - Q); the pmf in logarithms,
  // since Q^n underflows past ~74,000 samples (its terms are negligible there, the later ones are not).
  const step = Math.log((1 - Q) / Q);
  let logPmf = n * Math.log(Q);
  let cdf = Math.exp(logPmf);
  const largest = (k: number) => sorted[n - k] as number;
  // Lower end: the k-th largest, for the smallest k with P(A <= k - 1) >= 1 - TAIL (found by j = n - 1
  // at the latest: P(A <= n - 1) = 1 - 0.01^n).
  let lowK = n;
  // Upper end: the m-th largest, for the largest m with P(A >= m) >= 1 - TAIL, i.e. P(A <= m - 1) <= TAIL.
  let highM = 0;
  for (let j = 0; j < n; j++) {
    if (cdf <= TAIL) highM = j + 1;
    if (cdf >= 1 - TAIL) {
      lowK = j + 1;
      break;
    }
    logPmf += Math.log((n - j) / (j + 1)) + step;
    cdf += Math.exp(logPmf);
  }
  return { low: largest(lowK), high: highM === 0 ? null : largest(highM) };
}
