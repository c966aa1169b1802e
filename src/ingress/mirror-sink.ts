/**
 * Where a shipping mirror sends its exchanges: a runtime-test collector (the driver's), over HTTP
 * with a bearer token, a batch of exchanges per POST on keep-alive connections. Also the wire format
 * both sides share: a JSON array, bodies in base64 (they may be binary), validated on arrival.
 */
import { Pool } from 'undici';
import { z } from 'zod';
import type { ShippedExchange } from './mirror.js';

export interface MirrorSink {
  /** Base URL of the collector, e.g. http://127.0.0.1:9400. */
  url: string;
  /** Bearer token the collector requires. */
  token: string;
  /** Share of eligible reads shipped (MirrorLimits.sampleRate). Default 1. */
  sampleRate?: number;
}

export const EXCHANGES_PATH = '/v1/exchanges';

export interface SinkClient {
  ship(exchanges: ShippedExchange[], signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** A client for one collector; at most `connections` shipments (batches) are on the wire at once. */
export function shipTo(sink: MirrorSink, connections = 4): SinkClient {
  const base = new URL(sink.url);
  const prefix = base.pathname.replace(/\/$/, '');
  const pool = new Pool(base.origin, { connections, keepAliveTimeout: 10_000 });
  const authorization = `Bearer ${sink.token}`;
  return {
    async ship(exchanges, signal) {
      const res = await pool.request({
        path: prefix + EXCHANGES_PATH,
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify(exchanges.map(encodeExchange)),
        signal,
      });
      const text = await res.body.text();
      if (res.statusCode !== 202)
        throw new Error(
          `runtime-test collector ${sink.url} answered ${res.statusCode}: ${text.slice(0, 200)}`,
        );
    },
    close: () => pool.close(),
  };
}

const answer = z.object({
  universe: z.enum(['old', 'new']),
  status: z.number().int().min(100).max(999),
  headers: z.array(z.string()),
  body: z.base64(),
  truncated: z.boolean(),
});

const wireExchange = z.object({
  request: z.object({
    method: z.string().min(1).max(32),
    url: z.string().startsWith('/'),
    headers: z.array(z.string()),
    body: z.base64(),
  }),
  primary: answer,
  primaryDoneAt: z.number(),
});

type WireExchange = z.infer<typeof wireExchange>;

function encodeExchange(x: ShippedExchange): WireExchange {
  return {
    request: { ...x.request, body: x.request.body.toString('base64') },
    primary: { ...x.primary, body: x.primary.body.toString('base64') },
    primaryDoneAt: x.primaryDoneAt,
  };
}

const wireBatch = z.array(wireExchange).min(1);

/**
 * Parses what a shipping mirror sent (a batch: all of it is valid or none is taken); throws a
 * message naming the first bad field.
 */
export function decodeExchanges(json: unknown): ShippedExchange[] {
  // A bare exchange is a batch of one: what nodes of the previous release send, one per POST.
  const parsed = wireBatch.safeParse(Array.isArray(json) ? json : [json]);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `malformed exchange batch: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data.map((x) => ({
    request: { ...x.request, body: Buffer.from(x.request.body, 'base64') },
    primary: { ...x.primary, body: Buffer.from(x.primary.body, 'base64') },
    primaryDoneAt: x.primaryDoneAt,
  }));
}
