/**
 * Parent side of converter-child.ts: starts the conversion in its own process and offers its
 * catch-up to the runtime test's barrier (a CatchUpSource), as an ingress node would reach the
 * driver's conversion.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { withDeadline } from '../deadline.js';
import type { CatchUpSource } from '../runtime-test/index.js';
import { onTeardown } from '../universe/teardown.js';
import type { ConverterReply, ConverterRequest } from './converter-child.js';
import { TS_LOADER } from '../loader/args.js';

export interface ConverterProcess extends CatchUpSource {
  /** The stream's failure, if it failed. */
  failure(): string | undefined;
  stop(): Promise<void>;
  readonly pid: number;
}

export async function startConverterProcess(opts: {
  sourceUrl: string;
  targetUrl: string;
  name: string;
}): Promise<ConverterProcess> {
  const child = fork(fileURLToPath(new URL('./converter-child.ts', import.meta.url)), [], {
    execArgv: [...TS_LOADER],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const unregister = onTeardown('conversion process', async () => void child.kill(), {
    pid: child.pid ?? 0,
    signal: 'SIGTERM',
  });
  const waiting = new Map<number, (r: ConverterReply) => void>();
  let failure: string | undefined;
  let next = 1;
  child.on('message', (r: ConverterReply) => {
    if (r.id === -1 && !r.ok) failure = r.error;
    waiting.get(r.id)?.(r);
    waiting.delete(r.id);
  });
  child.on('exit', (code) => {
    failure ??= `the conversion process exited (${code})`;
    for (const resolve of waiting.values()) resolve({ id: 0, ok: false, error: failure });
    waiting.clear();
  });
  const ask = (req: ConverterRequest, id: number, timeoutMs: number): Promise<void> =>
    withDeadline(
      `conversion process: ${req.cmd}`,
      new Promise<void>((resolve, reject) => {
        waiting.set(id, (r) => (r.ok ? resolve() : reject(new Error(r.error))));
        child.send(req);
      }),
      timeoutMs,
    );
  await ask({ cmd: 'start', ...opts }, 0, 120_000);
  return {
    pid: child.pid ?? 0,
    catchUp: (timeoutMs) => {
      const id = next++;
      return ask({ cmd: 'catchUp', id, timeoutMs }, id, timeoutMs + 1_000);
    },
    readFence: (timeoutMs) => {
      const id = next++;
      return ask({ cmd: 'readFence', id, timeoutMs }, id, timeoutMs + 1_000);
    },
    failure: () => failure,
    stop: async () => {
      unregister();
      if (child.exitCode === null && child.connected) {
        await ask({ cmd: 'stop' }, 0, 30_000).catch(() => {});
        child.disconnect();
      }
    },
  };
}
