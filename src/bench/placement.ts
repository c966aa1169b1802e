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
import { readFileSync } from 'node:fs';
import { availableParallelism, setPriority } from 'node:os';
import pg from 'pg';
import { ImagoError } from '../errors.js';
import { processTree, procStat } from './process-tree.js';

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

/**
 * The CPUs this process may use, in two halves, the first for the old universe, or why not. They
 * are read, not assumed to be 0…n-1: a container may allow others, and a user's own `taskset` is
 * kept.
 */
export function planPlacement(mode: PlacementMode, cpus = allowedCpus()): Placement {
  if (mode === 'shared') return { mode };
  if (cpus.length < 2) return { mode: 'shared', note: 'one CPU: nothing to split' };
  if (spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status !== 0)
    return { mode: 'shared', note: 'taskset not found (Debian: apt-get install util-linux)' };
  const half = Math.ceil(cpus.length / 2);
  return { mode, oldCpus: cpuList(cpus.slice(0, half)), newCpus: cpuList(cpus.slice(half)) };
}

/** `0-2,5` → [0, 1, 2, 5]. */
export function parseCpuList(list: string): number[] {
  return list
    .split(',')
    .filter((part) => part.trim() !== '')
    .flatMap((part) => {
      const [from, to = from] = part.split('-').map(Number) as [number, number?];
      return Array.from({ length: to - from + 1 }, (_, i) => from + i);
    });
}

/** [0, 1, 2, 5] → `0-2,5`. */
export function cpuList(cpus: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < cpus.length;) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === (cpus[j] as number) + 1) j++;
    runs.push(i === j ? `${cpus[i]}` : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return runs.join(',');
}

function allowedCpus(): number[] {
  try {
    const list = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (list) return parseCpuList(list);
  } catch {
    // Not Linux: no taskset either.
  }
  return Array.from({ length: availableParallelism() }, (_, i) => i);
}

/**
 * Pins each process, its threads and its descendants, except the subtrees of `except` (pinned
 * elsewhere); later forks inherit.
 */
export function pin(pids: number[], cpus: string | undefined, except: number[] = []): void {
  if (!cpus) return;
  // Already-forked children do not inherit a new affinity: the whole tree now.
  for (const pid of processTree(pids, except).keys()) {
    let r = taskset(pid, cpus);
    // `-a` fails when a thread ends while it walks them: once more, then it counts.
    if (r.status !== 0 && isAlive(pid)) r = taskset(pid, cpus);
    // A process that ended meanwhile cannot be pinned, and needs not be.
    if (r.status !== 0 && isAlive(pid))
      throw new ImagoError(
        `could not pin process ${pid} to CPUs ${cpus}: ${r.stderr.trim() || `taskset exited ${r.status}`}`,
        'placement',
      );
  }
}

function taskset(pid: number, cpus: string) {
  return spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
}

/**
 * Gives processes the lowest CPU priority: nice 19, and the idle scheduling class where `chrt`
 * exists, descendants included.
 */
export function deprioritise(pids: number[]): void {
  for (const pid of processTree(pids).keys()) {
    try {
      setPriority(pid, 19);
    } catch {
      // Ended meanwhile, or not ours.
    }
    // Niceness alone lets a waking task of the new universe go ahead of the old one's (it is placed
    // near the front whatever its weight); the idle class does not. Neither keeps the old universe's
    // tasks off a CPU the new universe is using: that is what the split is for. Inherited by later forks.
    spawnSync('chrt', ['--idle', '-a', '-p', '0', String(pid)], { stdio: 'ignore' });
  }
}

/** The postmaster of the server behind `databaseUrl` (its backends and workers are its children). */
export async function postmasterOf(databaseUrl: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return procStat(rows[0]?.pid ?? 0)?.ppid;
  } finally {
    await client.end();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, and not ours to change.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
