/**
 * Everything Imago starts (clusters, app processes, servers) registers its stop here, so that
 * Ctrl-C or SIGTERM stops them in reverse order before the process exits, and nothing is left running.
 */
type Stop = () => Promise<void>;

/** A process to signal if Imago exits before stopping it (a crash): the last resort against orphans. */
export interface Orphan {
  pid: number;
  signal: NodeJS.Signals;
}

const stops = new Map<number, { name: string; stop: Stop; orphan?: Orphan }>();
let nextId = 0;
let installed = false;
let exiting = false;

export function onTeardown(name: string, stop: Stop, orphan?: Orphan): () => void {
  installSignalHandlers();
  const id = nextId++;
  stops.set(id, { name, stop, orphan });
  return () => stops.delete(id);
}

/** Stops everything registered, newest first; errors are reported, never thrown. */
export async function teardownAll(log: (line: string) => void = () => {}): Promise<void> {
  const entries = [...stops.entries()].reverse();
  stops.clear();
  for (const [, { name, stop }] of entries) {
    try {
      await stop();
    } catch (err) {
      log(`could not stop ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

function installSignalHandlers(): void {
  if (installed) return;
  installed = true;
  // On an exit without teardown (an uncaught error), only synchronous work is possible: signal them.
  process.on('exit', () => {
    for (const { orphan } of stops.values()) {
      if (!orphan) continue;
      try {
        process.kill(orphan.pid, orphan.signal);
      } catch {
        // already gone
      }
    }
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (exiting) return;
      exiting = true;
      process.stderr.write(`\nimago: ${signal} received, stopping everything it started…\n`);
      void teardownAll((line) => process.stderr.write(`imago: ${line}\n`)).finally(() =>
        process.exit(signal === 'SIGINT' ? 130 : 143),
      );
    });
  }
}
