/**
 * The comparison budget: at most `perSecond` reads compared per endpoint and second. A token bucket
 * per endpoint holds a fifth of a second's worth (at least one read): enough for a rare endpoint's
 * reads that come close together, too little for saved-up budget to become a burst of copies. A read
 * over budget is passed over on arrival, before its barrier, copy and noise sample, so it costs
 * nothing beyond the ingress's capture.
 *
 * Why per endpoint rather than a lower sample rate: the work a comparison sets off (a copy to the new
 * universe, sometimes a noise sample at the old one) grows with the traffic, while the evidence the
 * gate needs (a minimum per endpoint) does not. A budget keeps the cost flat as the busiest endpoint
 * grows and still compares nearly every read of a rare one, which a uniform rate would thin out too.
 * (GoReplay's `--output-http "…|10"` rate limit is the same idea, without the per-endpoint part.)
 */
/** Moves every entry to its new key, merging entries that meet there. */
function remap<V>(map: Map<string, V>, rekey: (key: string) => string, merge: (a: V, b: V) => V): void {
  const entries = [...map];
  map.clear();
  for (const [key, v] of entries) {
    const to = rekey(key);
    const there = map.get(to);
    map.set(to, there === undefined ? v : merge(there, v));
  }
}

interface Bucket {
  tokens: number;
  at: number;
}

export interface BudgetStats {
  perSecond: number;
  /** Reads passed over per endpoint. */
  passedOver: Record<string, number>;
}

export class CompareBudget {
  private readonly buckets = new Map<string, Bucket>();
  private readonly passed = new Map<string, number>();
  private readonly capacity: number;

  constructor(
    private readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0)) throw new RangeError(`a comparison budget must be positive, not ${perSecond}`);
    this.capacity = Math.max(1, perSecond / 5);
  }

  /** Whether a read of this endpoint may be compared now; takes a token if so. */
  admit(endpoint: string): boolean {
    const t = this.now();
    let b = this.buckets.get(endpoint);
    if (!b) this.buckets.set(endpoint, (b = { tokens: this.capacity, at: t }));
    else {
      b.tokens = Math.min(this.capacity, b.tokens + ((t - b.at) / 1000) * this.perSecond);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    this.passed.set(endpoint, (this.passed.get(endpoint) ?? 0) + 1);
    return false;
  }

  /** After endpoint learning merged keys: counts and buckets follow their new key (the emptiest wins). */
  rekey(rekey: (key: string) => string): void {
    remap(this.buckets, rekey, (a, b) => (a.tokens <= b.tokens ? a : b));
    remap(this.passed, rekey, (a, b) => a + b);
  }

  stats(): BudgetStats {
    return { perSecond: this.perSecond, passedOver: Object.fromEntries(this.passed) };
  }
}
