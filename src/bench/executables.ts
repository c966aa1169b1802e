/** Finds the tools a benchmark runs (wrk, nginx) without installing anything. */
import { spawnSync } from 'node:child_process';

/** The path of `name` on PATH, else the first of `extra` that is executable (nginx lives in /usr/sbin). */
export function findExecutable(name: string, extra: string[] = []): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  for (const p of extra) if (spawnSync('test', ['-x', p]).status === 0) return p;
  return undefined;
}

export const findNginx = (): string | undefined => findExecutable('nginx', ['/usr/sbin/nginx']);
