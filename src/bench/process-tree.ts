/**
 * Processes read from /proc: a process's parent and CPU time, and the tree below some roots. The
 * benchmarks use it to sum a target's CPU (its workers included) and to place whole process trees
 * (a PostgreSQL server with its backends) on CPUs.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  /** The command name (`node`, `nginx`, `esbuild`), as the kernel keeps it. */
  comm: string;
  /** R, S, D…; Z for a zombie: ended, not yet reaped by its parent. */
  state: string;
  ppid: number;
  /** User + system time, in clock ticks. */
  ticks: number;
}

export function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const close = text.lastIndexOf(')');
    const f = text.slice(close + 2).split(' ');
    return {
      comm: text.slice(text.indexOf('(') + 1, close),
      state: f[0] ?? '',
      ppid: Number(f[1]),
      ticks: Number(f[11]) + Number(f[12]),
    };
  } catch {
    // Not Linux, or the process ended.
    return undefined;
  }
}

/**
 * The roots and every descendant alive now, each with its stat (undefined when unreadable), leaving
 * out the subtrees rooted at `except`. Without /proc, the roots alone.
 */
export function processTree(roots: number[], except: number[] = []): Map<number, ProcStat | undefined> {
  const stats = new Map<number, ProcStat>();
  const children = new Map<number, number[]>();
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    // Not Linux: the roots alone.
  }
  for (const name of names) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = procStat(pid);
    if (st === undefined) continue;
    stats.set(pid, st);
    const list = children.get(st.ppid);
    if (list) list.push(pid);
    else children.set(st.ppid, [pid]);
  }
  const skip = new Set(except);
  const tree = new Map<number, ProcStat | undefined>();
  const stack = roots.filter((pid) => pid > 0 && !skip.has(pid));
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    if (tree.has(pid)) continue;
    tree.set(pid, stats.get(pid));
    for (const child of children.get(pid) ?? []) if (!skip.has(child)) stack.push(child);
  }
  return tree;
}
