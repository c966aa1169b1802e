/**
 * A universe's application as a real process: started with its database's connection string and a
 * port in the environment, healthy once its health check passes (app-health.ts), stopped with
 * SIGTERM (then SIGKILL after a deadline). Its output goes to a log file, so a failure can point at it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { ImagoError } from '../errors.js';
import { startFailure } from './startup-error.js';
import { waitUntil } from '../deadline.js';
import { DEFAULT_APP_HEALTH, checkHealth, type AppHealth } from './app-health.js';
import { freePort } from './ports.js';
import { onTeardown } from './teardown.js';

export interface AppOptions {
  /** For messages, e.g. "wiki v1". */
  name: string;
  /** Program and arguments. */
  command: string[];
  env: Record<string, string>;
  /** What answers that the app is ready (default GET /healthz answered 2xx). */
  health?: AppHealth;
  logFile: string;
  startTimeoutMs?: number;
}

export interface AppProcess {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startApp(options: AppOptions): Promise<AppProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = openSync(options.logFile, 'a');
  const fromByte = fstatSync(log).size;
  const [program, ...args] = options.command;
  if (!program) throw new ImagoError(`no command to start ${options.name}`, options.name);
  const child: ChildProcess = spawn(program, args, {
    env: { ...process.env, ...options.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', log, log],
    detached: true, // its own process group: Ctrl-C reaches Imago, which stops it in order
  });
  closeSync(log);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const stop = async () => {
    unregister();
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exit;
    clearTimeout(timer);
  };
  const unregister = onTeardown(options.name, stop, { pid: child.pid ?? 0, signal: 'SIGTERM' });
  const health = options.health ?? DEFAULT_APP_HEALTH;
  try {
    await waitUntil(
      `${options.name} answering GET ${health.path} at ${url}`,
      async () => {
        // Its first error, not its log's last lines (often Node's version banner).
        if (exited)
          throw startFailure(`${options.name} exited while starting`, options.logFile, [], fromByte);
        return (await checkHealth(url, health)).healthy ? true : undefined;
      },
      { timeoutMs: options.startTimeoutMs ?? 30_000, intervalMs: 50, hint: `see ${options.logFile}` },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, pid: child.pid ?? 0, stop };
}
