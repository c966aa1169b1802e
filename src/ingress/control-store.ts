/**
 * Where an ingress node keeps its control state (epoch, route, hold, mirror, the epoch of its last
 * release, and the upstreams set through the control endpoint) so that a node that
 * restarts resumes from the last acknowledged transition instead of guessing its route. Written
 * before a transition is acknowledged. The file store writes a temp file and renames it, so a crash
 * leaves either the old or the new state, never half of one.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { UniverseName } from './universe.js';

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

const stateSchema = z.object({
  epoch: z.number().int().nonnegative(),
  route: z.enum(['old', 'new']),
  holding: z.boolean(),
  mirror: z.boolean(),
  releasedEpoch: z.number().int().nonnegative().optional(),
  upstreams: z
    .object({ old: z.array(z.string()).optional(), new: z.array(z.string()).optional() })
    .optional(),
});

export class FileControlStore implements ControlStore {
  constructor(readonly path: string) {}

  async load(): Promise<ControlState | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = stateSchema.safeParse(JSON.parse(text));
    if (!parsed.success)
      throw new Error(`ingress control state ${this.path} is malformed: ${parsed.error.message}`);
    return parsed.data;
  }

  async save(state: ControlState): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(state)}\n`, { flush: true });
    await rename(tmp, this.path);
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
