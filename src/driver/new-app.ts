/**
 * The new universe's app when the plan gives a command: started detached, with its own log, and not
 * tied to the driver's life — once switched it serves the clients, so a driver that exits, crashes or
 * is stopped with Ctrl-C must not take it down. Its pid is journaled as soon as it is spawned (before
 * the health wait), then its URL; a resumed driver reuses it if it still answers its health check, and
 * `abort` stops it. It leads its own process group, and stopping it signals the whole group, so what
 * it started itself (a shell's child, a dev server's worker) stops with it.
 *
 * Its environment is an allow-list of Imago's (PATH, HOME, locale, temp dirs…) plus the plan's `env`:
 * Imago's own secrets (PGPASSWORD, tokens) are not passed on.
 */
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { DeadlineError, ImagoError } from '../errors.js';
import { waitUntil } from '../deadline.js';
import {
  DEFAULT_APP_HEALTH,
  checkHealth,
  describeStatus,
  type AppHealth,
  type HealthAnswer,
} from '../universe/app-health.js';
import { startFailure } from '../universe/startup-error.js';
import { freePort } from '../universe/ports.js';

/** Variables of Imago's own environment the app inherits; everything else comes from the plan. */
const INHERITED_ENV = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'TERM',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'TMP',
  'TEMP',
  'NODE_ENV',
  'SYSTEMROOT',
]);

/** The app's environment: Imago's allow-listed variables (and LC_*), then the plan's. */
export function appEnvironment(
  own: NodeJS.ProcessEnv,
  planEnv: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(own))
    if (v !== undefined && (INHERITED_ENV.has(k) || k.startsWith('LC_'))) env[k] = v;
  return { ...env, ...planEnv };
}

export interface StartedApp {
  url: string;
  pid: number;
  logFile: string;
}

export async function startDetachedApp(options: {
  command: string[];
  env: Record<string, string>;
  cwd: string;
  /** Default: GET /healthz answered 2xx. */
  health?: AppHealth;
  logDir: string;
  timeoutMs?: number;
  /** Values to mask in what is shown of the app's log (the passwords it was handed). */
  secrets?: readonly string[];
  /** Called (and awaited) once the process exists, before the health wait: journal the pid here. */
  onSpawn?: (pid: number) => Promise<void>;
}): Promise<StartedApp> {
  const [program, ...args] = options.command;
  if (!program) throw new ImagoError('no command to start the new app', 'new.app.command');
  mkdirSync(options.logDir, { recursive: true });
  const logFile = join(options.logDir, 'new-app.log');
  const port = await freePort();
  const log = openSync(logFile, 'a');
  // Where this start's output begins: the log holds earlier starts' too, and their errors are not this one's.
  const fromByte = fstatSync(log).size;
  const child = spawn(program, args, {
    cwd: options.cwd,
    env: { ...appEnvironment(process.env, options.env), PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  child.unref();
  let exited = false;
  let exitedWith = '';
  child.once('exit', (code, signal) => {
    exited = true;
    exitedWith = signal ? `killed by ${signal}` : `exit code ${code}`;
  });
  child.once('error', () => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  const pid = child.pid ?? 0;
  const health = options.health ?? DEFAULT_APP_HEALTH;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const secrets = options.secrets ?? [];
  try {
    if (pid === 0) throw startFailure('the new app could not be started', logFile, secrets, fromByte);
    await options.onSpawn?.(pid);
    let last: HealthAnswer | undefined;
    await waitUntil(
      `the new app answering GET ${health.path} with ${describeStatus(health.status)} at ${url}`,
      async () => {
        if (exited)
          throw startFailure(
            `the new app exited while starting (${exitedWith || 'it could not be run'})`,
            logFile,
            secrets,
            fromByte,
          );
        last = await checkHealth(url, health);
        return last.healthy ? true : undefined;
      },
      { timeoutMs, intervalMs: 50 },
    ).catch((err: unknown) => {
      if (!(err instanceof DeadlineError)) throw err;
      throw startFailure(
        `the new app did not pass its health check within ${timeoutMs} ms (last: ${last?.seen ?? 'none answered'})`,
        logFile,
        secrets,
        fromByte,
      );
    });
  } catch (err) {
    // Not healthy in time (or gone): nothing may be left running that no journal entry points to.
    if (pid !== 0) await stopDetachedApp(pid, 2_000);
    throw err;
  }
  return { url, pid, logFile };
}

/**
 * Stops an app started by a (possibly earlier) driver, with its whole process group (it was spawned
 * detached, so it leads one): SIGTERM, then SIGKILL after a deadline.
 */
export async function stopDetachedApp(pid: number, timeoutMs = 5_000): Promise<void> {
  if (!signal(pid, 0)) return;
  signal(pid, 'SIGTERM');
  try {
    await waitUntil('the new app to exit', () => Promise.resolve(signal(pid, 0) ? undefined : true), {
      timeoutMs,
    });
  } catch {
    signal(pid, 'SIGKILL');
  }
}

/** Signals the process group led by `pid` (or the process alone if it leads none); false if none is left. */
function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }
}
