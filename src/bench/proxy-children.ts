/**
 * Child-process entry for the proxy benchmark: runs either the echo backend or an Imago ingress in its
 * own process (so that each competes for CPU like the real thing, not inside the harness), prints
 * `ready <port>` on stdout and runs until killed.
 * Usage: node --import tsx src/bench/proxy-children.ts backend | ingress <upstream-url>
 */
import { startEchoBackend } from './proxy-backend.js';
import { startIngress } from '../ingress/index.js';

const [role, upstream] = process.argv.slice(2);
if (role === 'backend') {
  const b = await startEchoBackend({ name: 'old' });
  process.stdout.write(`ready ${b.port}\n`);
} else if (role === 'ingress' && upstream) {
  const i = await startIngress({ upstreams: { old: [upstream] }, route: 'old' });
  process.stdout.write(`ready ${i.port}\n`);
} else {
  process.stderr.write('usage: proxy-children.ts backend | ingress <upstream-url>\n');
  process.exit(2);
}
