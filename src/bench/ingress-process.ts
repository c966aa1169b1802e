/**
 * An ingress node in its own process, started as an operator would (`imago ingress`), driven through
 * its control endpoint as the driver drives it: for benches that measure what production runs.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { withDeadline } from '../deadline.js';
import { IngressNode } from '../switchover/index.js';
import { freePort } from '../universe/ports.js';
import { onTeardown } from '../universe/teardown.js';

export interface IngressProcess {
  /** Where clients connect. */
  url: string;
  /** Its control endpoint, as the driver reaches it. */
  node: IngressNode;
  /** The node's process (its workers are its children). */
  pid: number;
  stop(): Promise<void>;
}

const imago = fileURLToPath(new URL('../../bin/imago.js', import.meta.url));

export async function startIngressProcess(o: { old: string[]; workers: number }): Promise<IngressProcess> {
  const token = randomBytes(24).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'imago-bench-ingress-'));
  const args = ['ingress', '--name', 'bench', '--workers', String(o.workers), '--json'];
  for (const url of o.old) args.push('--old', url);
  args.push('--listen', `127.0.0.1:${await freePort()}`, '--control-port', String(await freePort()));
  args.push('--state', join(dir, 'state.json'));
  const child = spawn(process.execPath, [imago, ...args], {
    env: { ...process.env, IMAGO_INGRESS_TOKEN: token },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await withDeadline('the ingress process to stop', exited, 15_000).catch(() => child.kill('SIGKILL'));
    rmSync(dir, { recursive: true, force: true });
  };
  const unregister = onTeardown('ingress process', stop, { pid: child.pid ?? 0, signal: 'SIGTERM' });
  const line = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    void exited.then(() => reject(new Error('imago ingress exited before listening')));
  });
  const info = JSON.parse(await withDeadline('imago ingress listening', line, 30_000)) as {
    url: string;
    control: string;
  };
  return {
    url: info.url,
    node: new IngressNode({ name: 'bench', control: info.control, token }),
    pid: child.pid ?? 0,
    stop: async () => {
      unregister();
      await stop();
    },
  };
}
