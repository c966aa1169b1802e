/**
 * The processes `imago bench proxy` measures, started here for the bench and for the test that drives
 * them with clients that leave (test/bench-proxy-disconnects.test.ts), so that the test covers what
 * the bench runs: the echo backend and Imago's ingress (proxy-children.ts), nginx (proxy-nginx.ts) and
 * the minimal baseline (minimal-proxy.ts). Each writes its log to a file of its own, and tells when it,
 * or any one of its processes (a worker), has ended: figures from a proxy that lost a worker are not
 * the proxy's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, openSync, closeSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil, withDeadline } from '../deadline.js';
import { ImagoError } from '../errors.js';
import { TS_LOADER } from '../loader/args.js';
import { freePort } from '../universe/ports.js';
import { onTeardown } from '../universe/teardown.js';
import { logExcerpt } from './log-excerpt.js';
import { processTree, procStat } from './process-tree.js';
import { nginxConfig } from './proxy-nginx.js';

export type Target = 'direct' | 'imago' | 'nginx' | 'minimal';
export type ProxyTarget = Exclude<Target, 'direct'>;

export const TARGET_LABELS: Record<Target, string> = {
  direct: 'the echo backend',
  imago: "Imago's ingress",
  nginx: 'nginx',
  minimal: 'the minimal Node proxy (minimal-proxy.ts)',
};

export interface BenchProcess {
  readonly target: Target;
  /** For people: "Imago's ingress". */
  readonly label: string;
  readonly port: number;
  /** The root process (a cluster primary, nginx's master). */
  readonly pid: number;
  /** Its stderr (nginx: its error log too), kept when it dies. */
  readonly logPath: string;
  /** Why its figures can no longer be trusted (it exited, or one of its processes ended), else undefined. */
  failure(): string | undefined;
  stop(): Promise<void>;
}

/**
 * Every process of the tree under `root` that runs the root's command (node, nginx: leaves out helpers
 * such as esbuild's service), as seen so far: reports those that have ended since. Cumulative, because
 * workers may start after the root is ready (nginx forks them after binding) and a crash caused by a
 * run's last connections may come after that run.
 */
class ProcessWatch {
  private readonly seen = new Set<number>();
  private readonly comm: string | undefined;

  constructor(private readonly root: number) {
    this.comm = procStat(root)?.comm;
    this.ended();
  }

  /** The pids seen before that are gone (or zombies) now. */
  ended(): number[] {
    const alive = new Set<number>();
    for (const [pid, st] of processTree([this.root]))
      if (st && st.state !== 'Z' && st.comm === this.comm) alive.add(pid);
    const gone = [...this.seen].filter((pid) => !alive.has(pid));
    for (const pid of alive) this.seen.add(pid);
    return gone;
  }

  get size(): number {
    return this.seen.size;
  }
}

/** Tracks a started child: its exit, its processes, its stop. */
function benchProcess(target: Target, child: ChildProcess, port: number, logPath: string): BenchProcess {
  let exit: string | undefined;
  let stopping = false;
  child.once('exit', (code, signal) => {
    exit = signal ? `it was killed by ${signal}` : `it exited with code ${code}`;
  });
  const pid = child.pid ?? 0;
  const watch = new ProcessWatch(pid);
  const stop = async (): Promise<void> => {
    stopping = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await withDeadline(`${TARGET_LABELS[target]} to stop`, exited, 10_000).catch(() => {
      child.kill('SIGKILL');
    });
  };
  const unregister = onTeardown(TARGET_LABELS[target], stop, { pid, signal: 'SIGTERM' });
  return {
    target,
    label: TARGET_LABELS[target],
    port,
    pid,
    logPath,
    failure() {
      if (stopping) return undefined;
      if (exit) return exit;
      const gone = watch.ended();
      if (gone.length === 0) return undefined;
      if (gone.includes(pid)) return `its process ${pid} ended`;
      return `${gone.length === 1 ? 'its process' : 'its processes'} ${gone.join(', ')} ended (of the ${watch.size} it ran; the others live on)`;
    },
    async stop() {
      unregister();
      await stop();
    },
  };
}

/** A child that cannot be started: named, with the head of its log. */
function startFailure(target: Target, logPath: string, why: string): ImagoError {
  return new ImagoError(
    `${TARGET_LABELS[target]} did not start: ${why}\n${indent(logExcerpt(logPath))}`,
    `${TARGET_LABELS[target]} (log: ${logPath})`,
    `its log is kept at ${logPath}`,
  );
}

export const indent = (lines: string[]): string => lines.map((l) => `    ${l}`).join('\n');

/** Runs a TypeScript entry (proxy-children.ts, minimal-proxy.ts) and waits for its `ready <port>`. */
async function startNodeChild(
  target: Target,
  script: string,
  args: string[],
  dir: string,
): Promise<BenchProcess> {
  const logPath = join(dir, `${target}.log`);
  const fd = openSync(logPath, 'a');
  const entry = fileURLToPath(new URL(script, import.meta.url));
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...TS_LOADER, entry, ...args], { stdio: ['ignore', 'pipe', fd] });
  } finally {
    closeSync(fd);
  }
  const stdout = child.stdout as NodeJS.ReadableStream;
  const ready = new Promise<number>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /ready (\d+)\n/.exec(out);
      if (!m) return;
      // Whatever it prints later goes to its log (and must be read, or it would block on a full pipe).
      stdout.off('data', onData);
      stdout.pipe(createWriteStream(logPath, { flags: 'a' }));
      resolve(Number(m[1]));
    };
    stdout.on('data', onData);
    child.once('exit', (code, signal) => reject(new Error(`it exited with ${signal ?? `code ${code}`}`)));
  });
  let port: number;
  try {
    port = await withDeadline(`${TARGET_LABELS[target]} to start`, ready, 30_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw startFailure(target, logPath, err instanceof Error ? err.message : String(err));
  }
  return benchProcess(target, child, port, logPath);
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

async function startNginx(nginx: string, dir: string, backendPort: number): Promise<BenchProcess> {
  const port = await freePort();
  const logPath = join(dir, 'nginx.log');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig({ dir, port, backendPort, logPath }));
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(nginx, ['-p', dir, '-c', conf, '-e', logPath], { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `it exited with ${signal ?? `code ${code}`}`));
  try {
    await waitUntil(
      'nginx to accept connections',
      async () => {
        if (exited) throw new Error(exited);
        return (await accepts(port)) || undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw startFailure('nginx', logPath, err instanceof Error ? err.message : String(err));
  }
  return benchProcess('nginx', child, port, logPath);
}

/** The echo backend every target forwards to, in its own process. */
export function startBenchBackend(dir: string): Promise<BenchProcess> {
  return startNodeChild('direct', './proxy-children.ts', ['backend'], dir);
}

/**
 * A proxy in front of `upstream`, as the bench runs it: `workers` processes for Imago's ingress and the
 * minimal proxy (nginx: one per core, `worker_processes auto`); its log in `dir`.
 */
export async function startProxy(
  target: ProxyTarget,
  o: { upstream: string; workers: number; dir: string; nginx?: string },
): Promise<BenchProcess> {
  if (target === 'imago')
    return startNodeChild(target, './proxy-children.ts', ['ingress', o.upstream, String(o.workers)], o.dir);
  if (target === 'minimal')
    return startNodeChild(target, './minimal-proxy.ts', [o.upstream, String(o.workers)], o.dir);
  if (!o.nginx) throw new Error('startProxy: nginx needs the path of its executable');
  return startNginx(o.nginx, o.dir, Number(new URL(o.upstream).port));
}
