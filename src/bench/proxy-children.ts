/**
 * Child-process entry for the proxy benchmark: runs either the echo backend or an Imago ingress in its
 * own process (so that each competes for CPU like the real thing, not inside the harness), prints
 * `ready <port>` on stdout and runs until killed. The ingress runs `workers` processes (a cluster
 * primary plus workers when more than one).
 * Usage: node --import tsx src/bench/proxy-children.ts backend | ingress <upstream-url> [workers]
 */
import { startEchoBackend } from './proxy-backend.js';
import { startIngress, startIngressCluster } from '../ingress/index.js';

const [role, upstream, workersArg] = process.argv.slice(2);
if (role === 'backend') {
  const b = await startEchoBackend({ name: 'old' });
  process.stdout.write(`ready ${b.port}\n`);
} else if (role === 'ingress' && upstream) {
  const workers = Number(workersArg ?? 1);
  const options = { upstreams: { old: [upstream] }, route: 'old' as const };
  const i = workers > 1 ? await startIngressCluster({ ...options, workers }) : await startIngress(options);
  const stop = (): void => void i.close().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(`ready ${i.port}\n`);
} else {
  process.stderr.write('usage: proxy-children.ts backend | ingress <upstream-url> [workers]\n');
  process.exit(2);
}
