/**
 * The noise sample: the same read sent to the old universe once more, after the new universe has
 * answered it. The old side's disagreement with itself is what the comparator learns as noise. Only
 * reads get here (the ingress mirrors reads only), so repeating one changes nothing.
 */
import { Pool } from 'undici';
import type { RawAnswer } from './answer.js';

export interface SampledRequest {
  method: string;
  url: string;
  /** Flat [name, value, …], hop-by-hop headers already removed by the ingress. */
  headers: readonly string[];
  body: Buffer;
}

export type Sample = { answer: RawAnswer; latencyMs: number } | { error: string };

export class NoiseSampler {
  private readonly pools: Pool[];
  private turn = 0;

  constructor(
    oldUrls: readonly string[],
    private readonly options: { timeoutMs?: number; maxResponseBytes?: number; connections?: number } = {},
  ) {
    // Few connections: noise samples queue here rather than compete with clients at the old universe.
    this.pools = oldUrls.map((u) => new Pool(u, { connections: options.connections ?? 2 }));
  }

  async sample(req: SampledRequest): Promise<Sample> {
    const pool = this.pools[this.turn++ % Math.max(1, this.pools.length)];
    if (!pool) return { error: 'no old universe address to take noise samples from' };
    const limit = this.options.maxResponseBytes ?? 1024 * 1024;
    const started = performance.now();
    try {
      const res = await pool.request({
        method: req.method as 'GET',
        path: req.url,
        headers: [...req.headers],
        body: req.body.length > 0 ? req.body : null,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      for await (const chunk of res.body) {
        const b = chunk as Buffer;
        if (truncated || size + b.length > limit) truncated = true;
        else {
          chunks.push(b);
          size += b.length;
        }
      }
      const headers: string[] = [];
      for (const [name, value] of Object.entries(res.headers)) {
        for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value])
          headers.push(name, v);
      }
      return {
        answer: { status: res.statusCode, headers, body: Buffer.concat(chunks, size), truncated },
        latencyMs: performance.now() - started,
      };
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close()));
  }
}
