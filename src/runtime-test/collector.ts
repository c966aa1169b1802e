/**
 * The runtime test's door for ingress nodes in other processes: they ship the mirrored reads (the
 * request and the old universe's answer of each, in batches) here, and the runtime test takes it from there (barrier,
 * copy to the new universe, comparison). Loopback and a bearer token by default; a body limit, a
 * read deadline, and precise 4xx answers for what is malformed. Accepting an exchange only queues it:
 * the answer never waits for the comparison, so a node's shipping queue never backs up behind it.
 */
import { listen } from '../universe/listen.js';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { decodeExchanges, EXCHANGES_PATH, type ShippedExchange } from '../ingress/index.js';

export interface CollectorOptions {
  /** Default 127.0.0.1: reachable from other hosts only when asked for. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** The URL nodes are told to use, when they reach this host by another name (NAT, DNS). */
  advertise?: string;
  /** Default: 32 random bytes, hex. */
  token?: string;
  /**
   * Largest batch accepted, bytes of JSON. Default 8 MiB: a node's batch holds at most 2 MiB of
   * bodies, or one exchange (two 1 MiB bodies at most): about 2.7 MiB in base64, plus up to 64
   * requests' headers (the front end's header limit each; a few KiB in practice).
   */
  maxBodyBytes?: number;
  onExchange: (exchange: ShippedExchange) => void;
}

export interface Collector {
  /** What a node needs to ship here. */
  readonly sink: { url: string; token: string };
  /** Exchanges accepted; POSTs refused (a batch is taken whole or not at all). */
  readonly counts: { accepted: number; refused: number };
  close(): Promise<void>;
}

export async function startCollector(o: CollectorOptions): Promise<Collector> {
  const token = o.token ?? randomBytes(32).toString('hex');
  const expected = Buffer.from(`Bearer ${token}`);
  const maxBody = o.maxBodyBytes ?? 8 * 1024 * 1024;
  const counts = { accepted: 0, refused: 0 };

  const server = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    const answer = (status: number, message: string): void => {
      if (status !== 202) counts.refused++;
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'keep-alive' });
      res.end(message);
    };
    const given = Buffer.from(req.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      req.resume();
      return answer(401, 'a valid bearer token is required');
    }
    if (req.method !== 'POST' || req.url !== EXCHANGES_PATH) {
      req.resume();
      return answer(404, `only POST ${EXCHANGES_PATH} is served here`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBody) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) return answer(413, `exchange batch larger than ${maxBody} bytes`);
      let exchanges: ShippedExchange[];
      try {
        exchanges = decodeExchanges(JSON.parse(Buffer.concat(chunks, size).toString('utf8')));
      } catch (err) {
        return answer(
          400,
          err instanceof SyntaxError ? `not JSON: ${err.message}` : String((err as Error).message),
        );
      }
      counts.accepted += exchanges.length;
      answer(202, 'queued');
      for (const x of exchanges) o.onExchange(x);
    });
    req.on('error', () => {});
  });
  server.keepAliveTimeout = 15_000;
  const { url } = await listen(server, o.port ?? 0, o.host ?? '127.0.0.1');
  return {
    sink: { url: o.advertise ?? url, token },
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
