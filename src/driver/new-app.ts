/**
 * The new universe's app when the plan gives a command: started detached, with its own log, and not
 * tied to the driver's life — once switched it serves the clients, so a driver that exits, crashes or
 * is stopped with Ctrl-C must not take it down. Its pid and URL are journaled; a resumed driver reuses
 * it if it still answers its health check, and `abort` stops it.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ImagoError } from '../errors.js';
import { waitUntil } from '../deadline.js';
import { freePort } from '../universe/ports.js';

export interface StartedApp {
  url: string;
  pid: number;
  logFile: string;
}

export async function startDetachedApp(options: {
  command: string[];
  env: Record<string, string>;
  cwd: string;
  healthPath: string;
  logDir: string;
  timeoutMs?: number;
}): Promise<StartedApp> {
  const [program, ...args] = options.command;
  if (!program) throw new ImagoError('no command to start the new app', 'new.app.command');
  mkdirSync(options.logDir, { recursive: true });
  const logFile = join(options.logDir, 'new-app.log');
  const port = await freePort();
  const log = openSync(logFile, 'a');
  const child = spawn(program, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));
  child.once('error', () => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    `the new app answering ${url}${options.healthPath}`,
    async () => {
      if (exited) {
        const tail = readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
        throw new ImagoError(`the new app exited while starting: ${tail}`, logFile, 'see its log');
      }
      return (await healthy(url, options.healthPath)) ? true : undefined;
    },
    { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 50, hint: `see ${logFile}` },
  );
  return { url, pid: child.pid ?? 0, logFile };
}

export async function healthy(url: string, path: string): Promise<boolean> {
  try {
    const res = await fetch(new URL(path, url), { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Stops an app started by a (possibly earlier) driver: SIGTERM, then SIGKILL after a deadline. */
export async function stopDetachedApp(pid: number, timeoutMs = 5_000): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  try {
    await waitUntil('the new app to exit', () => Promise.resolve(alive(pid) ? undefined : true), {
      timeoutMs,
    });
  } catch {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
