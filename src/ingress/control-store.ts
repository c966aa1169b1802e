/**
 * Where an ingress node keeps its control state (epoch, route, hold, mirror, the epoch of its last
 * release, and the upstreams set through the control endpoint) so that a node that
 * restarts resumes from the last acknowledged transition instead of guessing its route. Written
 * once a transition has been applied and before it is acknowledged, so it never holds a state the
 * node refused. The file store writes a temp file, syncs it and renames it over the old one, so a
 * crash leaves either the old or the new state, never half of one; a file it cannot use is refused
 * at start naming the file and the field.
 */
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { errorMessage, ImagoError } from '../errors.js';
import type { UniverseName } from './universe.js';
import { upstreamUrlProblem } from './upstream-url.js';

export interface ControlState {
  epoch: number;
  route: UniverseName;
  holding: boolean;
  mirror: boolean;
  /** The epoch of the last release: a hold at this epoch or below arrives late and is refused. */
  releasedEpoch?: number;
  /** Upstream URLs per universe as last set (a restarted node must still reach the new universe). */
  upstreams?: Partial<Record<UniverseName, string[]>>;
}

export interface ControlStore {
  load(): Promise<ControlState | undefined>;
  save(state: ControlState): Promise<void>;
}

const upstreamUrl = z.string().superRefine((url, ctx) => {
  const problem = upstreamUrlProblem(url);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

const stateSchema = z.object({
  epoch: z.number().int().nonnegative(),
  route: z.enum(['old', 'new']),
  holding: z.boolean(),
  mirror: z.boolean(),
  releasedEpoch: z.number().int().nonnegative().optional(),
  upstreams: z
    .object({ old: z.array(upstreamUrl).optional(), new: z.array(upstreamUrl).optional() })
    .optional(),
});

/** A field path as written in JavaScript: upstreams.new[0]. */
function fieldName(path: readonly PropertyKey[]): string {
  const name = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`));
  return name.join('') || '(the whole file)';
}

const UNUSABLE_HINT =
  'it holds the node’s last acknowledged control state: correct that field, or remove the file to start from the command line (the driver sets the route and upstreams again)';

export class FileControlStore implements ControlStore {
  private saves = 0;

  constructor(readonly path: string) {}

  async load(): Promise<ControlState | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return undefined;
      throw new ImagoError(
        `cannot read the ingress state file ${this.path}: ${errorMessage(err)}`,
        this.path,
        'make it readable by the node, or give another file (--state)',
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new ImagoError(
        `ingress state file ${this.path} is not JSON: ${errorMessage(err)}`,
        this.path,
        UNUSABLE_HINT,
      );
    }
    const parsed = stateSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = fieldName(issue?.path ?? []);
      throw new ImagoError(
        `ingress state file ${this.path} is unusable: field ${field}: ${issue?.message ?? 'invalid'}`,
        `${this.path} (${field})`,
        UNUSABLE_HINT,
      );
    }
    return parsed.data;
  }

  async save(state: ControlState): Promise<void> {
    const dir = dirname(this.path);
    const tmp = `${this.path}.${process.pid}.${++this.saves}.tmp`;
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(tmp, `${JSON.stringify(state)}\n`, { flush: true });
      await rename(tmp, this.path);
      // The rename is durable only once the directory entry is.
      const handle = await open(dir, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new ImagoError(
        `cannot write the ingress state file ${this.path}: ${errorMessage(err)}`,
        this.path,
        'make its directory writable by the node (and not full), or give another file (--state)',
      );
    }
  }
}

/** Keeps the state in memory only (tests, single-shot runs). */
export class MemoryControlStore implements ControlStore {
  constructor(private state?: ControlState) {}
  load(): Promise<ControlState | undefined> {
    return Promise.resolve(this.state && { ...this.state });
  }
  save(state: ControlState): Promise<void> {
    this.state = { ...state };
    return Promise.resolve();
  }
}
