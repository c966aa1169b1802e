/**
 * Where the runtime-test bench runs each universe on one shared machine. Imago's new universe has
 * its own processes and its own database server, in production on machines of its own; a benchmark
 * box has to stand in for both. Two stand-ins, from weaker to stronger:
 *
 * - `shared`: the new universe's processes at nice 19 in the idle scheduling class, on every CPU;
 * - `split` (the default where there are two CPUs or more and `taskset` exists): the same
 *   priorities, and the CPUs split in two halves as two machines would be: the old universe, its
 *   database, the ingress and the clients on the first, the new universe, its database, the
 *   conversion and the driver (the bench's own process) on the second.
 *
 * Priority alone does not isolate on this kernel: a CPU running only idle-class tasks counts as idle
 * when a woken task is placed, and under `preempt=none` a task in a system call keeps its CPU until
 * it leaves it, idle class or not. So with `shared` (and with the new universe confined to half the
 * CPUs while the old one may use all) the new universe's work still delays the old one's requests, a
 * cost production would not see. What runs on the old universe's half is what mirroring costs it
 * for real: the ingress's capture and shipping, the noise samples at v1 and its database, the
 * fences' reads of its WAL position, the change stream's walsender.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, setPriority } from 'node:os';
import pg from 'pg';
import { ImagoError } from '../errors.js';

export type PlacementMode = 'split' | 'shared';

export interface Placement {
  mode: PlacementMode;
  /** CPU lists as `taskset -c` takes them; undefined when shared. */
  oldCpus?: string;
  newCpus?: string;
  /** Why a split was asked for and not applied. */
  note?: string;
}

export function parsePlacement(value: unknown): PlacementMode {
  if (value === undefined || value === 'split') return 'split';
  if (value === 'shared') return 'shared';
  throw new ImagoError(`expected "split" or "shared", not ${String(value)}`, 'placement');
}

/** The CPUs in two halves, the first for the old universe, or why not. */
export function planPlacement(mode: PlacementMode): Placement {
  if (mode === 'shared') return { mode };
  const cpus = availableParallelism();
  if (cpus < 2) return { mode: 'shared', note: 'one CPU: nothing to split' };
  if (spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status !== 0)
    return { mode: 'shared', note: 'taskset not found (Debian: apt-get install util-linux)' };
  const half = Math.ceil(cpus / 2);
  const list = (from: number, to: number) => (to - from === 1 ? `${from}` : `${from}-${to - 1}`);
  return { mode, oldCpus: list(0, half), newCpus: list(half, cpus) };
}

/** Pins each process, its threads and its descendants; later forks inherit. */
export function pin(pids: number[], cpus: string | undefined): void {
  if (!cpus) return;
  for (const pid of withDescendants(pids)) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    // A process that ended meanwhile cannot be pinned, and needs not be.
    if (r.status !== 0 && isAlive(pid))
      throw new ImagoError(`could not pin process ${pid} to CPUs ${cpus}`, 'placement');
  }
}

/**
 * Gives processes the lowest CPU priority: nice 19, and the idle scheduling class where `chrt`
 * exists, descendants included.
 */
export function deprioritise(pids: number[]): void {
  for (const pid of withDescendants(pids)) {
    try {
      setPriority(pid, 19);
    } catch {
      // Ended meanwhile, or not ours.
    }
    // Niceness alone does not keep short bursts from preempting the old universe (a waking task is
    // placed near the front whatever its weight); the idle class does. Inherited by later forks.
    spawnSync('chrt', ['--idle', '-a', '-p', '0', String(pid)], { stdio: 'ignore' });
  }
}

/** The postmaster of the server behind `databaseUrl` (its backends and workers are its children). */
export async function postmasterOf(databaseUrl: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return parentOf(rows[0]?.pid ?? 0);
  } finally {
    await client.end();
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    // Not Linux, or the process ended.
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The processes and every descendant alive now (already-forked children do not inherit). */
function withDescendants(pids: number[]): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return pids;
  }
  for (const entry of entries) {
    const parent = parentOf(Number(entry));
    if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const all = new Set<number>();
  const visit = (pid: number) => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  pids.filter((p) => p > 0).forEach(visit);
  return [...all];
}
