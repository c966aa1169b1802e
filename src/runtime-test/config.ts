/**
 * What the upgrade plan says about runtime testing: how endpoints are grouped, how answers are
 * normalised before comparison, which differences are expected, what is redacted from reports and
 * when the switchover may start. Everything is optional; defaults compare status, content type and
 * the whole body.
 */
import type { Answer } from './answer.js';
import type { SettledNoiseOptions } from './settled-noise.js';

/**
 * Where a normaliser or expectation applies: 'GET /wiki/:title', '/wiki/:title' (any method) or
 * absent (every endpoint). `:name` matches one path segment, a trailing `*` any rest.
 */
export type EndpointScope = string | undefined;

export type Normaliser =
  /** Removes these paths from both answers (e.g. `$headers.date`, `generated_at`, `items.*.etag`). */
  | { kind: 'ignore'; endpoint?: string; paths: string[] }
  /** Sorts the arrays at these paths (by the JSON of each element, or of its `by` field). */
  | { kind: 'sort'; endpoint?: string; paths: string[]; by?: string }
  /** Replaces a regular expression in text bodies and in string values at `paths` (default all). */
  | { kind: 'replace'; endpoint?: string; pattern: string | RegExp; with: string; paths?: string[] }
  /** Numbers at these paths are equal when within `absolute` or `relative` (fraction) of each other. */
  | { kind: 'tolerance'; endpoint?: string; paths: string[]; absolute?: number; relative?: number };

/** An answer from the old universe and the request it answered. */
export interface OldAnswerContext {
  method: string;
  url: string;
}

export type ExpectedDifference =
  /** Declares that the new universe differs at these paths, e.g. `length` added in v2. */
  | { endpoint?: string; paths: string[]; change?: 'added' | 'removed' | 'changed' | 'any'; why?: string }
  /**
   * Maps an old answer to the new answer it should become, for an API that changes on purpose; the
   * new universe's answer is then compared with the mapped one (so the new value is checked too).
   */
  | { endpoint?: string; expect: (old: Answer, request: OldAnswerContext) => Answer; why?: string };

export interface NoiseOptions extends SettledNoiseOptions {
  /**
   * A path is noise only after the old universe disagreed with itself on it this many times.
   * Default 5 (DEFAULT_MIN_OCCURRENCES in noise.ts, which says why).
   */
  minOccurrences?: number;
  /**
   * An unexplained difference on a noisy path is forgiven while its rate stays within this multiple of
   * the path's noise rate. Default 1: a difference counts only beyond what the old side does itself.
   */
  factor?: number;
  /**
   * Noise samples are taken for every answer that differs (they are what explains it) and for this
   * share of the answers that match (to learn noise and time old against new on the same requests).
   * Sampling every answer would double the reads the old universe serves. Default 0.1.
   */
  calibrationRate?: number;
  // resampleEvery, settleAfter: differences on settled noise paths sampled one in n (settled-noise.ts).
}

export interface GateCriteria {
  /** Every endpoint seen (or each of `endpoints`) needs this many comparisons. Default 50. */
  minComparedPerEndpoint?: number;
  /** Endpoints that must have been compared ('GET /wiki/:title'); default all seen. */
  endpoints?: string[];
  /** Largest share of unexpected mismatches per endpoint. Default 0. */
  maxMismatchRate?: number;
  /** 5xx answers from the new universe where the old one did not fail. Default 0. */
  maxNew5xx?: number;
  /** Share of new-universe timeouts and connection errors per endpoint. Default 0.01. */
  maxErrorRate?: number;
  /**
   * New p99 ÷ old p99 per endpoint (same requests, same moment), at most. Judged on the new p99's lower
   * bound at 97.5 % confidence, so that a few slow samples do not decide it. Default 2.
   */
  maxLatencyRatio?: number;
}

/**
 * What sample diffs mask besides the defaults (credential headers, and JSON fields, form fields,
 * query parameters and headers named like a secret: `token`, `password`, `secret`, `apikey`, `jwt`,
 * `session`, …; JWTs anywhere), which always apply. Only what is shown and stored for people is
 * masked: answers are compared on their real values.
 */
export interface RedactOptions {
  /**
   * Name parts: a JSON field, form field, query parameter or header whose name contains one (ignoring
   * case, `_`, `-` and `.`) has its string values masked, e.g. `ssn`, `iban`.
   */
  fields?: string[];
  /** Headers masked whole (exact names, any case). */
  headers?: string[];
  /** Query parameters masked (exact names). */
  query?: string[];
}

export interface RuntimeTestConfig {
  /** Declared route templates ('GET /wiki/:title' or '/wiki/:title'); others are learned. */
  routes?: string[];
  /** Headers compared besides the status and body. Default ['content-type']. */
  compareHeaders?: string[];
  /** What sample diffs mask (RedactOptions). */
  redact?: RedactOptions;
  /** Headers masked in sample diffs besides the defaults (the same as `redact.headers`). */
  redactHeaders?: string[];
  /** Query parameters masked in sample URLs (the same as `redact.query`). */
  redactQuery?: string[];
  normalise?: Normaliser[];
  expected?: ExpectedDifference[];
  noise?: NoiseOptions;
  gate?: GateCriteria;
  /**
   * Share of mirrored reads compared (every n-th, n = 1/rate). Below 1 it lowers what mirroring costs
   * the old universe's clients, at the price of a longer wait for the gate's minimum. Default 1.
   */
  sampleRate?: number;
  /**
   * Reads compared per endpoint and second, at most (a token bucket holding a fifth of a second's
   * worth); the others are passed over on arrival and counted. It bounds what runtime testing costs as
   * traffic grows while every endpoint still reaches the gate's minimum (an endpoint with at least
   * this many sampled reads a second in about minComparedPerEndpoint ÷ this many seconds); rare
   * endpoints keep nearly every sampled read.
   * Applied after sampleRate. Default: no limit.
   */
  maxComparedPerSecond?: number;
  /**
   * Reads compared at once: copy to the new universe, then its noise sample at the old one. Default 1.
   * Reads waiting for the barrier do not count. One at a time keeps the runtime test from setting off
   * bursts of work (copies released together by one fence, their noise samples together at the old
   * universe) that land on the old universe's clients' tail latency; one comparison takes a few
   * milliseconds, so one at a time keeps up with a few hundred compared reads a second, and beyond
   * that the mirror's queue drops and counts (lower `sampleRate` instead).
   */
  concurrency?: number;
  /** Sample diffs kept per endpoint. Default 5. */
  samplesPerEndpoint?: number;
  /** Learned templates: a path position with more distinct values than this becomes a parameter. Default 20. */
  learnAfter?: number;
}
