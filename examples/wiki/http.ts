/**
 * HTTP plumbing shared by both wiki versions (and the blog example's): a tiny router over node:http, JSON bodies with a size
 * limit, JSON replies with fixed extra headers, errors turned into JSON answers (never a crash), and a
 * graceful close. It knows nothing about wikis: routes are supplied by the caller.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Bodies above this are refused with 413 (the wiki's largest legitimate page is far smaller). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** An error with the HTTP status to answer; its message becomes `{ error }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Reply {
  status: number;
  body: unknown;
}

export interface RequestContext {
  /** Path parameters (`:name` segments), URL-decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** Reads and parses the JSON body (400 on bad JSON, 413 above MAX_BODY_BYTES). */
  json(): Promise<unknown>;
}

export interface Route {
  method: string;
  /** E.g. `/wiki/:title/history`; a `:name` segment matches exactly one non-separator segment. */
  path: string;
  handle(ctx: RequestContext): Promise<Reply>;
}

export interface ServeOptions {
  routes: Route[];
  port?: number;
  host?: string;
  /** Headers set on every response, errors included (e.g. the app version). */
  headers?: Record<string, string>;
  /** Releases what the routes use (e.g. a pool) once the server has stopped. */
  onClose?: () => Promise<void>;
  /** Names the app in the log lines of failed requests. */
  name?: string;
}

export interface Served {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** How long close() lets in-flight requests finish before cutting their connections. */
const CLOSE_GRACE_MS = 5_000;

interface Match {
  route?: Route;
  params: Record<string, string>;
  /** Methods of routes whose path matched (for 405 and its Allow header). */
  allowed: string[];
}

function match(routes: Route[], method: string, pathname: string): Match {
  const segments = pathname.split('/');
  const allowed: string[] = [];
  for (const route of routes) {
    const pattern = route.path.split('/');
    if (pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    const ok = pattern.every((p, i) => {
      const s = segments[i] ?? '';
      if (!p.startsWith(':')) return p === s;
      try {
        params[p.slice(1)] = decodeURIComponent(s);
        return true;
      } catch {
        throw new HttpError(400, 'malformed percent-encoding in path');
      }
    });
    if (!ok) continue;
    if (route.method === method) return { route, params, allowed };
    allowed.push(route.method);
  }
  return { params: {}, allowed };
}

// Listeners rather than `for await`: leaving a for-await loop early destroys the socket, and the
// client would see a reset instead of the 413. Left unread, node discards the rest of the body once
// the response is sent, so the connection stays usable.
function readBody(req: IncomingMessage): Promise<Buffer> {
  const tooLarge = () => new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        stop();
        reject(tooLarge());
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      stop();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
}

function send(res: ServerResponse, reply: Reply, headers: Record<string, string>, closing: boolean): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    // While closing, connections must not be kept for another request.
    ...(closing ? { Connection: 'close' } : {}),
  });
  res.end(payload);
}

/** Starts listening; resolves once bound. */
export function serve(options: ServeOptions): Promise<Served> {
  const headers = options.headers ?? {};
  let closing = false;

  const server = createServer((req, res) => {
    void (async () => {
      let reply: Reply;
      try {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const found = match(options.routes, req.method ?? 'GET', url.pathname);
        if (found.route) {
          reply = await found.route.handle({
            params: found.params,
            query: url.searchParams,
            json: () => readJson(req),
          });
        } else if (found.allowed.length > 0) {
          res.setHeader('Allow', found.allowed.join(', '));
          reply = { status: 405, body: { error: `method ${req.method} not allowed` } };
        } else {
          reply = { status: 404, body: { error: 'no such route' } };
        }
      } catch (err) {
        if (err instanceof HttpError) {
          reply = { status: err.status, body: { error: err.message } };
        } else {
          // Database and programming errors: answer 500 and keep serving.
          console.error(
            `${options.name ?? 'wiki'}: ${req.method} ${req.url}: ${err instanceof Error ? err.message : String(err)}`,
          );
          reply = { status: 500, body: { error: 'internal error' } };
        }
      }
      send(res, reply, headers, closing);
    })();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      const { port, address } = server.address() as AddressInfo;
      const host = address.includes(':') ? `[${address}]` : address;
      let closed: Promise<void> | undefined;
      const close = () =>
        (closed ??= (async () => {
          closing = true;
          const stopped = new Promise<void>((done) => server.close(() => done()));
          server.closeIdleConnections();
          const grace = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
          await stopped;
          clearTimeout(grace);
          await options.onClose?.();
        })());
      resolve({ port, url: `http://${host}:${port}`, close });
    });
  });
}
