/**
 * A paced, bounded HTTP load: `workers` concurrent loops sending the requests an operation generator
 * makes, at about `rate` requests per second in total, until stopped. It records what the atomicity
 * and durability checks need: every answer's status, version and timing, and every acknowledged write.
 */
import { Pool } from 'undici';

export interface LoadRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  body?: unknown;
  /** Marks a write; acknowledged writes (2xx) are kept for the durability check. */
  write?: { kind: string; id: string };
  /** Statuses that are a correct answer besides 2xx (e.g. 404 for a read of a page not created yet). */
  accept?: number[];
}

export interface Answer {
  status: number;
  /** Which version answered (the app's version header), or '' when none. */
  version: string;
  sentAt: number;
  receivedAt: number;
  /** The write's id when the request was an acknowledged write. */
  write?: string;
}

export interface LoadResult {
  requests: number;
  failed: number;
  failures: string[];
  acknowledged: { kind: string; id: string; version: string }[];
  latenciesMs: number[];
  answers: Answer[];
}

export interface Load {
  /** Stops sending, waits for requests in flight, and returns what was observed. */
  stop(): Promise<LoadResult>;
  /** Requests answered so far. */
  count(): number;
  /** The answers so far (a copy), for checks on a time window while the load runs. */
  answers(): Answer[];
}

export function startLoad(options: {
  url: string;
  workers: number;
  rate: number;
  next: (worker: number, seq: number) => LoadRequest;
  versionHeader: string;
  timeoutMs?: number;
}): Load {
  const pool = new Pool(options.url, { connections: options.workers, pipelining: 1 });
  const result: LoadResult = {
    requests: 0,
    failed: 0,
    failures: [],
    acknowledged: [],
    latenciesMs: [],
    answers: [],
  };
  let running = true;
  let seq = 0;
  const interval = (1000 * options.workers) / options.rate;

  const one = async (worker: number): Promise<void> => {
    const op = options.next(worker, seq++);
    const sentAt = performance.now();
    try {
      const res = await pool.request({
        method: op.method,
        path: op.path,
        headers: op.body === undefined ? {} : { 'content-type': 'application/json' },
        body: op.body === undefined ? undefined : JSON.stringify(op.body),
        headersTimeout: options.timeoutMs ?? 30_000,
        bodyTimeout: options.timeoutMs ?? 30_000,
      });
      await res.body.dump();
      const receivedAt = performance.now();
      const version = String(res.headers[options.versionHeader] ?? '');
      const ok = res.statusCode < 300 || (op.accept ?? []).includes(res.statusCode);
      const acked = op.write && res.statusCode < 300 ? { write: op.write.id } : {};
      result.answers.push({ status: res.statusCode, version, sentAt, receivedAt, ...acked });
      result.latenciesMs.push(receivedAt - sentAt);
      if (!ok) fail(`${op.method} ${op.path} → ${res.statusCode}`);
      else if (op.write && res.statusCode < 300) result.acknowledged.push({ ...op.write, version });
    } catch (err) {
      fail(`${op.method} ${op.path} → ${err instanceof Error ? err.message : String(err)}`);
    }
    result.requests++;
  };

  const fail = (what: string) => {
    result.failed++;
    if (result.failures.length < 20) result.failures.push(what);
  };

  const loop = async (worker: number) => {
    // Spread the workers' first requests over one interval, then keep each on its own pace.
    let due = performance.now() + (interval * worker) / options.workers;
    while (running) {
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (!running) break;
      due = Math.max(due + interval, performance.now() - interval);
      await one(worker);
    }
  };

  const loops = Array.from({ length: options.workers }, (_, i) => loop(i));
  return {
    count: () => result.requests,
    answers: () => [...result.answers],
    stop: async () => {
      running = false;
      await Promise.all(loops);
      await pool.close();
      return result;
    },
  };
}

/** The answers that break atomicity: old-version answers to requests sent after a client saw the new version. */
export function mixedAnswers(answers: Answer[], oldVersion: string, newVersion: string): number {
  const firstNew = Math.min(...answers.filter((a) => a.version === newVersion).map((a) => a.receivedAt));
  return answers.filter((a) => a.version === oldVersion && a.sentAt > firstNew).length;
}

/** The middle value (the mean of the two middle ones for an even count); 0 for none. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}
