/**
 * The plan's `runtimeTest` section, validated: what a YAML plan can say (normaliser patterns as
 * strings), plus typed mappings and RegExps from a TypeScript plan. For src/plan/schema.ts to embed.
 */
import { z } from 'zod';
import type { RuntimeTestConfig } from './config.js';

const endpoint = z.string({ error: "expected an endpoint such as 'GET /wiki/:title'" }).optional();
const paths = z.array(z.string(), { error: 'expected a list of paths such as items.*.etag' }).min(1);
const pattern = z.union([z.string(), z.instanceof(RegExp)], { error: 'expected a regular expression' });
const rate = z.number().min(0, { error: 'expected a share between 0 and 1' }).max(1);

const normaliser = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ kind: z.literal('ignore'), endpoint, paths }),
    z.strictObject({ kind: z.literal('sort'), endpoint, paths, by: z.string().optional() }),
    z.strictObject({
      kind: z.literal('replace'),
      endpoint,
      pattern: pattern.refine(
        (p) => {
          if (typeof p !== 'string') return true;
          try {
            new RegExp(p);
            return true;
          } catch {
            return false;
          }
        },
        { error: 'not a valid regular expression' },
      ),
      with: z.string(),
      paths: paths.optional(),
    }),
    z
      .strictObject({
        kind: z.literal('tolerance'),
        endpoint,
        paths,
        absolute: z.number().nonnegative().optional(),
        relative: z.number().nonnegative().optional(),
      })
      .refine((t) => t.absolute !== undefined || t.relative !== undefined, {
        error: 'give absolute or relative (or both)',
      }),
  ],
  { error: 'expected kind: ignore, sort, replace or tolerance' },
);

const expected = z.union(
  [
    z.strictObject({
      endpoint,
      paths,
      change: z.enum(['added', 'removed', 'changed', 'any']).optional(),
      why: z.string().optional(),
    }),
    z.strictObject({
      endpoint,
      expect: z.custom<
        Extract<NonNullable<RuntimeTestConfig['expected']>[number], { expect: unknown }>['expect']
      >((f) => typeof f === 'function', {
        error: 'expected a function from the old answer to the expected new one',
      }),
      why: z.string().optional(),
    }),
  ],
  { error: 'expected { paths, change? } or { expect: (old) => new } (expectJson in a TypeScript plan)' },
);

export const runtimeTestSchema = z.strictObject({
  routes: z.array(z.string()).optional(),
  compareHeaders: z.array(z.string()).optional(),
  redact: z
    .strictObject({
      fields: z.array(z.string().min(1)).optional(),
      headers: z.array(z.string().min(1)).optional(),
      query: z.array(z.string().min(1)).optional(),
    })
    .optional(),
  redactHeaders: z.array(z.string()).optional(),
  redactQuery: z.array(z.string()).optional(),
  normalise: z.array(normaliser).optional(),
  expected: z.array(expected).optional(),
  noise: z
    .strictObject({
      minOccurrences: z.number().int().positive().optional(),
      factor: z.number().positive().optional(),
      calibrationRate: rate.optional(),
      resampleEvery: z.number().int().positive().optional(),
      settleAfter: z.number().int().positive().optional(),
    })
    .optional(),
  gate: z
    .strictObject({
      minComparedPerEndpoint: z.number().int().nonnegative().optional(),
      endpoints: z.array(z.string()).optional(),
      maxMismatchRate: rate.optional(),
      maxNew5xx: z.number().int().nonnegative().optional(),
      maxErrorRate: rate.optional(),
      maxLatencyRatio: z.number().positive().optional(),
    })
    .optional(),
  sampleRate: rate.positive().optional(),
  maxComparedPerSecond: z.number().positive().optional(),
  concurrency: z.number().int().positive().optional(),
  samplesPerEndpoint: z.number().int().nonnegative().optional(),
  learnAfter: z.number().int().positive().optional(),
});

// The schema's output must stay assignable to what the runtime test takes.
const _fits: (c: z.output<typeof runtimeTestSchema>) => RuntimeTestConfig = (c) => c;
