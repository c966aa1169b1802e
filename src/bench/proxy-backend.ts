/**
 * A small HTTP backend standing in for an app universe, shared by the proxy benchmark and the ingress
 * tests: answers GET with a small JSON naming its universe, reads POST bodies fully and answers with
 * their size. Tests can record what arrived and plug in their own handler for special behaviour.
 */
import { listen } from '../universe/listen.js';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
  /** performance.now() when the request headers arrived. */
  at: number;
}

export interface EchoBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Requests received, in arrival order (only when `record` is set). */
  readonly seen: SeenRequest[];
  /** TCP connections accepted so far (keep-alive checks). */
  connections(): number;
  close(): Promise<void>;
}

export interface EchoBackendOptions {
  name: string;
  port?: number;
  record?: boolean;
  /** Takes over a request; return false to fall through to the echo answer. */
  handler?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export async function startEchoBackend(opts: EchoBackendOptions): Promise<EchoBackend> {
  const seen: SeenRequest[] = [];
  const getBody = Buffer.from(JSON.stringify({ universe: opts.name, ok: true, items: [1, 2, 3] }));
  const server = http.createServer((req, res) => {
    const at = performance.now();
    if (opts.handler?.(req, res)) return;
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
    req.on('end', () => {
      if (opts.record) {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          rawHeaders: req.rawHeaders,
          bodyBytes,
          at,
        });
      }
      const body =
        req.method === 'GET' || req.method === 'HEAD'
          ? opts.record
            ? Buffer.from(JSON.stringify({ universe: opts.name, url: req.url }))
            : getBody
          : Buffer.from(JSON.stringify({ universe: opts.name, url: req.url, bodyBytes }));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  let connections = 0;
  server.on('connection', () => connections++);
  const { port, url } = await listen(server, opts.port ?? 0, '127.0.0.1');
  return {
    name: opts.name,
    port,
    url,
    seen,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
