/**
 * The shape of an upgrade plan and its validation rules. Messages are written for people editing a
 * plan by hand: each names what was expected, and the loader prefixes it with the field's path.
 */
import { z } from 'zod';
import { errorMessage } from '../errors.js';
import { runtimeTestSchema } from '../runtime-test/plan-schema.js';
import { hasPlaceholder, placeholderHint, unknownPlaceholders } from './placeholders.js';
import { DEFAULT_APP_HEALTH, describeStatus, parseStatusRanges } from '../universe/app-health.js';

const positiveMs = (fallback: number) =>
  z
    .number({ error: 'expected a positive number (milliseconds)' })
    .positive({ error: 'expected a positive number (milliseconds)' })
    .default(fallback);

const connectionString = z
  .string({ error: 'expected a PostgreSQL connection string or "embedded"' })
  .refine((s) => s === 'embedded' || /^postgres(ql)?:\/\/.+/.test(s), {
    error: 'expected a PostgreSQL connection string (postgresql://user:password@host:port/db) or "embedded"',
  });

const httpUrl = z.string({ error: 'expected an http(s) URL' }).refine((s) => /^https?:\/\/[^/\s]+/.test(s), {
  error: 'expected an http(s) URL such as http://127.0.0.1:8080',
});

/** Where the app answers whether it is up (universe/app-health.ts), for both forms of app. */
const health = {
  healthPath: z
    .string({ error: 'expected a path starting with /' })
    .startsWith('/', { error: 'expected a path starting with /' })
    .default(DEFAULT_APP_HEALTH.path),
  /** A code, a range or a list of them: 200, "200-399", [200, "301-302"]. */
  healthStatus: z
    .union([z.string(), z.number(), z.array(z.union([z.string(), z.number()]))], {
      error: 'expected a status code or range such as 200 or "200-399", or a list of them',
    })
    // Checked by a refinement (which, unlike a failing transform, lets the union name this field),
    // then parsed.
    .superRefine((spec, ctx) => {
      try {
        parseStatusRanges(spec);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: errorMessage(err) });
      }
    })
    .transform((spec) => parseStatusRanges(spec))
    // prefault: the default is parsed like a written value (ranges out).
    .prefault(describeStatus(DEFAULT_APP_HEALTH.status)),
};

/** An env value for the app: placeholders must name a database or one of its parts. */
const envValue = z.string({ error: 'expected a string' }).superRefine((value, ctx) => {
  for (const unknown of unknownPlaceholders(value))
    ctx.addIssue({
      code: 'custom',
      message: `unknown placeholder ${unknown}; ${placeholderHint(unknown)}`,
    });
});

/** An app already running (its URL) or one Imago starts (its command; PORT and HOST are set for it). */
const app = z.union(
  [
    z.strictObject({ url: httpUrl, ...health }),
    z.strictObject({
      command: z
        .array(
          z.string().refine((arg) => !hasPlaceholder(arg), {
            // Arguments are visible to every user of the machine (ps): no place for a password.
            error:
              'placeholders are filled in env values only: pass it to the app as an environment variable',
          }),
          { error: 'expected the program and its arguments as a list' },
        )
        .min(1, { error: 'expected at least the program to run' }),
      /** Values may use {{new.database}}, {{new.database.host}}… (placeholders.ts), and old's. */
      env: z.record(z.string(), envValue).default({}),
      /** Relative to the plan file's folder. */
      cwd: z.string().optional(),
      ...health,
    }),
  ],
  { error: 'expected either { url } of a running app or { command: [program, ...args] } to start it' },
);

const universe = z.strictObject({
  database: connectionString,
  app,
});

const ingressNode = z.strictObject({
  name: z.string().min(1, { error: 'expected a node name' }),
  /** The node's control endpoint (loopback), e.g. http://127.0.0.1:9101. */
  control: httpUrl,
  token: z.string().min(16, { error: 'expected the control bearer token (at least 16 characters)' }),
});

export const fencingModes = ['revoke', 'read-only', 'none'] as const;

const switchover = z
  .strictObject({
    /** The longest any request may be held, hold → release; past it the switch aborts. */
    maxPauseMs: positiveMs(2_000),
    /** Precheck: the measured catch-up time must be below this before anything is held. */
    maxCatchUpLagMs: positiveMs(500),
    deadlines: z
      .strictObject({
        /** How long the precheck may wait for the measured catch-up time to come under maxCatchUpLagMs. */
        precheckMs: positiveMs(30_000),
        prepareMs: positiveMs(1_000),
        drainMs: positiveMs(1_000),
        fenceMs: positiveMs(1_000),
        catchUpMs: positiveMs(1_000),
        /** After COMMIT, how long to keep retrying a node that has not flipped yet. */
        commitMs: positiveMs(5_000),
      })
      // prefault: an absent section is parsed as {}, so the field defaults above apply (written once).
      .prefault({}),
    fencing: z
      .strictObject({
        mode: z.enum(fencingModes, { error: `expected one of ${fencingModes.join(', ')}` }),
        /** The application's database role (required unless mode is none). */
        role: z.string().min(1).optional(),
      })
      .refine((f) => f.mode === 'none' || f.role !== undefined, {
        error: 'revoke and read-only fencing need the application role: add `role`',
        path: ['role'],
      })
      .default({ mode: 'none' }),
    /** Switch as soon as the upgrade is ready, without waiting for `imago switch`. */
    auto: z.boolean({ error: 'expected true or false' }).default(false),
  })
  .prefault({});

export const planSchema = z.strictObject({
  name: z
    .string({ error: 'expected a name' })
    .regex(/^[a-z_][a-z0-9_]{0,40}$/, { error: 'expected lower-case letters, digits and underscores' }),
  old: universe,
  new: universe,
  /** Module whose default export is a defineConversion(...); relative to the plan file's folder. */
  conversion: z.string({ error: 'expected the path of the conversion module' }).min(1),
  /** How the conversion runs (docs/conversion.md). */
  capture: z
    .strictObject({
      /** Tables Imago may switch to REPLICA IDENTITY FULL on the old database (explicit consent). */
      replicaIdentityFull: z.array(z.string({ error: 'expected a table name' })).default([]),
      /** Tables the bulk copy converts at once. */
      parallel: z
        .number()
        .int({ error: 'expected a whole number' })
        .min(1, { error: 'expected at least 1' })
        .default(1),
      /** WAL the slot may hold on the old database: a warning past warnMb, the upgrade paused past limitMb. */
      walWarnMb: z.number().positive({ error: 'expected a positive number (MB)' }).default(1024),
      walLimitMb: z.number().positive({ error: 'expected a positive number (MB)' }).default(16384),
      /** The bulk copy pauses while this shell command exits non-zero (the user's own load check). */
      throttleCommand: z.string().min(1).optional(),
      /** The bulk copy pauses while more sessions than this run queries on the old database. */
      throttleMaxActiveSessions: z.number().int().min(0).optional(),
    })
    .prefault({}),
  ingress: z.strictObject({
    nodes: z.array(ingressNode, { error: 'expected a list of ingress nodes' }).min(1, {
      error: 'expected at least one ingress node',
    }),
  }),
  switchover,
  /** Runtime testing before the switch (docs/runtime-test.md): mirrored reads compared, the gate. */
  runtimeTest: runtimeTestSchema
    .extend({
      /** Mirror reads to the new universe and switch only when the gate holds (or with --force). */
      required: z.boolean({ error: 'expected true or false' }).default(false),
      /** Where the driver receives the mirrored reads the ingress nodes ship. */
      collector: z
        .strictObject({
          /** Loopback by default; nodes on other hosts need an address they can reach. */
          host: z.string().min(1).default('127.0.0.1'),
          port: z.number().int().min(0).max(65535).default(0),
          /** The URL nodes are given, when they reach the driver by another name. */
          advertise: httpUrl.optional(),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Where the journal lives: default the new database (schema imago_control). */
  control: z.strictObject({ database: connectionString.optional() }).default({}),
  /** Local folder for what must survive the driver but has no database yet (embedded clusters). */
  stateDir: z.string().default('.imago'),
});

/** What a plan file states (defaults may be left out). */
export type UpgradePlanInput = z.input<typeof planSchema>;
/** A validated plan with every default filled in and paths resolved. */
export type UpgradePlan = z.output<typeof planSchema> & { /** Folder of the plan file. */ baseDir: string };
export type AppSpec = UpgradePlan['old']['app'];
export type IngressNodeSpec = UpgradePlan['ingress']['nodes'][number];
export type SwitchoverSpec = UpgradePlan['switchover'];
export type FencingMode = (typeof fencingModes)[number];
