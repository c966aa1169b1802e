/**
 * The issue's baseline for the proxy benchmark: a minimal node:http + undici reverse proxy, with the
 * same process count as Imago's ingress (node:cluster workers sharing the port). It forwards method,
 * path, headers (less hop-by-hop, plus X-Forwarded-For) and body both ways, and nothing else: no
 * hold, drain, mirror, metrics, limits or smuggling checks. Measured in the same run as Imago and
 * nginx, it tells what the machine gives any Node proxy, so that Imago's ratio to nginx can be read
 * apart from the machine's (kernel and wake-up costs moved nginx's figure by half between our runs).
 * Usage: node --import <loader> src/bench/minimal-proxy.ts <upstream-url> <workers>
 */
import cluster from 'node:cluster';
import http from 'node:http';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

function forwardable(headers: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>) {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

function serve(upstream: string, port: number): void {
  const pool = new Pool(upstream, { connections: 256 });
  const server = http.createServer((req, res) => {
    const headers = forwardable(req.headers);
    headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
    const bodyless = req.method === 'GET' || req.method === 'HEAD';
    pool
      .request({
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as 'GET',
        headers,
        body: bodyless ? null : req,
      })
      .then(({ statusCode, headers: answer, body }) => {
        // Errors either way end both: an upstream reset cuts the client's answer, a client gone aborts
        // the body. (Not stream.pipeline: it cost the client connection's keep-alive here, doubling CPU.)
        // The listener comes first: destroying a body that has all arrived but is unread emits
        // RequestAbortedError, and unhandled it ends the process (wrk's closing connections did).
        body.on('error', () => res.destroy());
        if (res.destroyed) return void body.destroy(); // the client left before the answer came
        res.writeHead(statusCode, forwardable(answer));
        res.on('close', () => body.destroy());
        body.pipe(res);
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1');
}

const [upstream, workersArg] = process.argv.slice(2);
if (!upstream) {
  process.stderr.write('usage: minimal-proxy.ts <upstream-url> <workers>\n');
  process.exit(2);
}
if (cluster.isPrimary) {
  const workers = Math.max(1, Number(workersArg ?? 1));
  // One port for every worker, picked here: node:cluster shares a port given by number (with port 0
  // each worker gets a random port of its own, and a later one given the first's number cannot bind).
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  let listening = 0;
  let ready = false;
  cluster.on('listening', () => {
    if (++listening < workers) return;
    ready = true;
    process.stdout.write(`ready ${port}\n`);
  });
  cluster.on('exit', (worker, code, signal) => {
    // Not replaced: the bench sees a worker gone and names it (its figures would be one worker's).
    process.stderr.write(
      `minimal proxy: worker ${worker.process.pid} exited with ${signal ?? `code ${code}`}${ready ? '' : ' before listening'}\n`,
    );
    if (!ready) process.exit(1);
  });
  for (let i = 0; i < workers; i++) cluster.fork({ MINIMAL_PROXY_PORT: String(port) });
  const stop = (): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} else {
  serve(upstream, Number(process.env.MINIMAL_PROXY_PORT));
}
