/**
 * The upstream HTTP/1.1 client of the hot path: a pool of keep-alive TCP connections to one backend,
 * one request at a time per connection (no pipelining), responses parsed by node's own llhttp binding
 * (the parser node:http's client uses). It replaces undici's Pool for proxied requests because the
 * proxy is CPU-bound and undici costs about 30 µs of CPU per request more on this path (measured; see
 * docs/ingress.md). undici stays in use for mirror copies.
 *
 * What it does: writes the request head (+ body, streamed with backpressure; chunked framing when no
 * Content-Length), parses the response head and body (Content-Length, chunked, until-close, HEAD, 1xx
 * skipped), hands both to a handler, and puts the connection back when both sides are complete and
 * the backend allows keep-alive. Timeouts (connect, response headers, silence inside the body) are
 * checked by one coarse ticker per pool rather than a timer per request. A bodyless GET, HEAD or
 * OPTIONS whose reused connection turns out to be closed before any response byte is retried once on
 * a new connection (the stale keep-alive race); other methods are not, since the backend may have
 * received the request before the reset. Errors carry the codes forward.ts maps to 502/504.
 */
import net from 'node:net';
import type { BodySink, RequestBody } from './client-request.js';
import { responseFault } from './framing.js';
import { writeHeadAndBody } from './socket-write.js';
import { consumeSocket, HTTPParser, releaseParser, Slot, type StreamHandle } from './parser-stream.js';

export interface UpstreamHandler {
  /** Called at dispatch; `abort(err)` cancels the exchange (its onError then receives `err`). */
  onConnect(abort: (err?: Error) => void): void;
  /** Response head; return false to pause, then call `resume`. Headers: flat [name, value, …]. */
  onHeaders(status: number, headers: string[], resume: () => void, statusText: string): boolean;
  /** A body chunk; return false to pause until `resume` (given to onHeaders) is called. */
  onData(chunk: Buffer): boolean;
  /**
   * The response is complete. `tail` is its last body chunk when it arrived in the same read as the
   * end (the usual case for small answers): not passed to onData, so that headers, body and end go to
   * the client in one write.
   */
  onComplete(tail?: Buffer): void;
  onError(err: Error): void;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query as sent on the request line. */
  path: string;
  /** Flat [name, value, …] request headers (hop-by-hop already removed; no Host). */
  headers: readonly string[];
  body: RequestBody | null;
}

export interface UpstreamTimeouts {
  connectMs: number;
  headersMs: number;
  bodyMs: number;
}

/** An upstream failure; `code` says which (ECONNREFUSED…, or the UND_ERR_* names forward.ts maps). */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** Idle keep-alive connections are closed after this (node servers close theirs after 5 s). */
const IDLE_MS = 4_000;

type Phase = 'connecting' | 'waiting' | 'body' | 'done';

class Exchange implements BodySink {
  conn: Connection | undefined = undefined;
  phase: Phase = 'connecting';
  /** performance.now() past which the current phase has timed out. */
  deadline = Infinity;
  paused = false;
  /** The request body has been written completely (or there was none). */
  sent = false;
  /** Some response bytes arrived (then a failure is never retried). */
  answered = false;
  retried = false;
  isHead: boolean;

  constructor(
    readonly pool: UpstreamPool,
    readonly req: UpstreamRequest,
    readonly handler: UpstreamHandler,
  ) {
    this.isHead = req.method === 'HEAD';
  }

  readonly abort = (err?: Error): void => {
    this.fail(err ?? new UpstreamError('request aborted', 'UND_ERR_ABORTED'));
  };

  readonly resume = (): void => {
    if (!this.paused) return;
    this.paused = false;
    if (this.phase === 'body') this.deadline = performance.now() + this.pool.timeouts.bodyMs;
    this.conn?.resume();
  };

  /** Ends the exchange with an error (once); the connection, if any, is destroyed. */
  fail(err: Error): void {
    if (this.phase === 'done') return;
    const conn = this.conn;
    if (conn !== undefined) conn.held = undefined;
    // A reused connection that the backend had closed: nothing was answered, nothing of a body sent.
    // Only for GET/HEAD/OPTIONS: the backend may have received the request before the reset.
    if (
      conn !== undefined &&
      conn.reused &&
      !this.answered &&
      !this.retried &&
      this.req.body === null &&
      IDEMPOTENT.has(this.req.method) &&
      (err as UpstreamError).code !== undefined &&
      RETRYABLE_ON_REUSE.has((err as UpstreamError).code)
    ) {
      this.retried = true;
      this.conn = undefined;
      conn.exchange = undefined;
      conn.destroy();
      this.phase = 'connecting';
      this.pool.start(this, true);
      return;
    }
    this.phase = 'done';
    this.pool.unqueue(this);
    this.detachBody();
    if (conn !== undefined) {
      conn.exchange = undefined;
      this.conn = undefined;
      conn.destroy();
    }
    this.handler.onError(err);
  }

  /** Writes the request on `conn` (head, then the body as it comes). */
  send(conn: Connection): void {
    this.conn = conn;
    conn.exchange = this;
    this.phase = 'waiting';
    // The response-headers deadline runs from when the request has gone out whole; a slow upload is
    // bounded by the client-side request timeout.
    this.deadline = Infinity;
    const { req } = this;
    let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${this.pool.hostHeader}\r\n`;
    let hasLength = false;
    const h = req.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i] as string;
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      head += `${name}: ${h[i + 1] as string}\r\n`;
    }
    const body = req.body;
    if (body === null) {
      this.markSent();
      conn.socket.write(`${head}\r\n`, 'latin1');
      return;
    }
    const chunked = !hasLength;
    this.chunked = chunked;
    this.pendingHead = chunked ? `${head}transfer-encoding: chunked\r\n\r\n` : `${head}\r\n`;
    // What arrived before (held, connecting) comes first; a failure seen meanwhile is reported now.
    body.attach(this);
  }

  private markSent(): void {
    this.sent = true;
    if (this.phase === 'waiting') this.deadline = performance.now() + this.pool.timeouts.headersMs;
  }

  private chunked = false;
  /** The request head, written together with the first body chunk (one write for small bodies). */
  private pendingHead: string | undefined = undefined;

  private flushHead(socket: net.Socket): void {
    if (this.pendingHead === undefined) return;
    socket.write(this.pendingHead, 'latin1');
    this.pendingHead = undefined;
  }

  onBodyData(chunk: Buffer): void {
    const socket = this.conn?.socket;
    if (socket === undefined || this.phase === 'done') return;
    if (chunk.length === 0) return;
    const head = this.pendingHead;
    if (head !== undefined && !this.chunked) {
      this.pendingHead = undefined;
      if (!writeHeadAndBody(socket, head, chunk)) this.waitForSocket(socket);
      return;
    }
    socket.cork();
    this.flushHead(socket);
    if (this.chunked) socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    let ok = socket.write(chunk);
    if (this.chunked) ok = socket.write('\r\n', 'latin1');
    socket.uncork();
    if (!ok) this.waitForSocket(socket);
  }

  /** The backend socket is full: the client body waits until it drains. */
  private waitForSocket(socket: net.Socket): void {
    this.req.body?.pause();
    socket.once('drain', this.onSocketDrain);
  }

  private readonly onSocketDrain = (): void => {
    if (this.phase !== 'done') this.req.body?.resume();
  };

  onBodyEnd(): void {
    const socket = this.conn?.socket;
    if (socket === undefined || this.phase === 'done') return;
    socket.cork();
    this.flushHead(socket);
    if (this.chunked) socket.write('0\r\n\r\n', 'latin1');
    socket.uncork();
    this.detachBody();
    this.markSent();
  }

  /** The client side of the body failed (size limit, malformed chunk, deadline, client gone). */
  onBodyError(err: Error): void {
    this.fail(err);
  }

  detachBody(): void {
    this.req.body?.detach();
  }
}

/** Codes that, on a reused connection before any response byte, mean "the backend had closed it". */
const RETRYABLE_ON_REUSE = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
/** Methods retried after such a failure (a write could be applied twice). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

/** One TCP connection with its parser; serves one exchange at a time. */
class Connection {
  readonly socket: net.Socket;
  readonly parser = new HTTPParser();
  exchange: Exchange | undefined = undefined;
  /** The last body chunk of the current read, not yet handed over (see onBody). */
  held: Buffer | undefined = undefined;
  /** An exchange whose response completed in the current read, settled once the read is parsed. */
  private completed: Exchange | undefined = undefined;
  private completedTail: Buffer | undefined = undefined;
  /** The libuv stream the parser consumes directly, when it does. */
  private handle: StreamHandle | undefined = undefined;
  reused = false;
  connected = false;
  keepAlive = true;
  idleSince = 0;
  private headerPairs: string[] = [];
  destroyed = false;

  constructor(readonly pool: UpstreamPool) {
    this.socket = net.connect({ host: pool.host, port: pool.port, noDelay: true });
    this.socket.on('connect', () => {
      this.connected = true;
      // The parser reads straight from the libuv stream (as node:http's server does), so response
      // bytes skip the Readable machinery; 'data' below only runs where consume() is unavailable.
      this.handle = consumeSocket(this.socket, this.parser);
      const ex = this.exchange;
      if (ex !== undefined && ex.phase === 'connecting') ex.send(this);
    });
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('error', (err: Error) => this.onSocketError(err));
    this.socket.on('close', () => this.onClose());
    const parser = this.parser;
    parser.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
    parser[Slot.headers] = (headers: string[]) => {
      for (const h of headers) this.headerPairs.push(h);
    };
    parser[Slot.headersComplete] = (
      _major: number,
      _minor: number,
      headers: string[] | undefined,
      _method: unknown,
      _url: unknown,
      statusCode: number,
      statusMessage: string,
      _upgrade: boolean,
      shouldKeepAlive: boolean,
    ): number => this.onHeadersComplete(headers, statusCode, statusMessage, shouldKeepAlive);
    parser[Slot.body] = (chunk: Buffer) => this.onBody(chunk);
    parser[Slot.messageComplete] = () => this.onMessageComplete();
    // kOnMessageBegin is set only between an answer's end and the end of its read (onMessageComplete,
    // afterRead): a callback into JavaScript per response costs more than what it does here.
    // Called after each consumed read with the bytes parsed or the parse error.
    parser[Slot.execute] = (ret: number | Error) => this.afterRead(ret);
  }

  /**
   * A response begins after the answer, in the same read ("more data than specified"): the backend is
   * not speaking HTTP/1.1 as expected, and those bytes must never become the next request's answer,
   * so the connection is dropped.
   */
  private readonly onExtraMessage = (): void => this.destroy();

  private onHeadersComplete(
    headers: string[] | undefined,
    status: number,
    statusText: string,
    shouldKeepAlive: boolean,
  ): number {
    let pairs = headers ?? [];
    if (this.headerPairs.length > 0) {
      pairs = this.headerPairs.concat(pairs);
      this.headerPairs = [];
    }
    const ex = this.exchange;
    if (ex === undefined) return 1;
    const fault = responseFault(status, pairs);
    if (fault !== undefined) {
      // Not relayable (502), rather than waited on until the headers timeout or re-framed wrongly.
      ex.fail(new UpstreamError(`invalid response from backend: ${fault}`, 'UND_ERR_INVALID_RESPONSE'));
      return 1;
    }
    // 1xx informational answers (103 Early Hints…) are not relayed; the final answer follows.
    if (status < 200) return 0;
    this.keepAlive = shouldKeepAlive;
    ex.phase = 'body';
    ex.deadline = performance.now() + this.pool.timeouts.bodyMs;
    const go = ex.handler.onHeaders(status, pairs, ex.resume, statusText);
    if (!go && ex.phase === 'body') {
      ex.paused = true;
      ex.deadline = Infinity;
      this.pause();
    }
    // HEAD: the answer has no body whatever its Content-Length says.
    return ex.isHead ? 1 : 0;
  }

  /**
   * A body chunk is kept until the next one, the end of the message or the end of this read, whichever
   * comes first: a small answer then ends with onComplete(tail) and no separate write, and a streamed
   * one is not delayed beyond the read that carried it.
   */
  private onBody(chunk: Buffer): void {
    const ex = this.exchange;
    if (ex === undefined || ex.phase !== 'body') return;
    if (!ex.paused) ex.deadline = performance.now() + this.pool.timeouts.bodyMs;
    const previous = this.held;
    this.held = chunk;
    if (previous !== undefined) this.deliver(ex, previous);
  }

  private deliver(ex: Exchange, chunk: Buffer): void {
    if (!ex.handler.onData(chunk) && ex.phase === 'body' && !ex.paused) {
      ex.paused = true;
      ex.deadline = Infinity;
      this.pause();
    }
  }

  /** End of a read: what is held goes out now. */
  private flushHeld(): void {
    const chunk = this.held;
    if (chunk === undefined) return;
    this.held = undefined;
    const ex = this.exchange;
    if (ex !== undefined && ex.phase === 'body') this.deliver(ex, chunk);
  }

  /**
   * The response is complete, but the rest of this read is still to be parsed: the connection is put
   * back, and the handler told, only after it (settle), since bytes that follow here were asked for by
   * no request and mean the connection must not be reused.
   */
  private onMessageComplete(): void {
    // Trailers arrive through kOnHeaders just before this: not relayed, and not the next answer's.
    if (this.headerPairs.length > 0) this.headerPairs = [];
    const ex = this.exchange;
    if (ex === undefined || ex.phase !== 'body') return;
    ex.phase = 'done';
    this.exchange = undefined;
    ex.conn = undefined;
    this.completed = ex;
    this.completedTail = this.held;
    this.held = undefined;
    this.parser[Slot.messageBegin] = this.onExtraMessage;
    // Reusable only when the request went out whole and both sides agree on keep-alive.
    if (!ex.sent || !this.keepAlive) {
      // The backend answered before reading the whole body: stop sending, drop the connection.
      ex.detachBody();
      this.destroy();
    }
  }

  /** After each read: a parse failure, or what is held goes out; then a completed exchange settles. */
  private afterRead(ret: number | Error): void {
    // Some response bytes arrived (0 is the end of a connection, see onEnd): never retried then.
    const current = this.exchange;
    if (ret === 0) {
      // Nothing was read.
    } else if (current !== undefined) current.answered = true;
    else if (this.completed === undefined) {
      // Bytes on an idle connection: a response nobody asked for (see onExtraMessage).
      this.destroy();
      if (!(ret instanceof Error)) return;
    }
    if (ret instanceof Error) this.parseFailed(ret);
    else this.flushHeld();
    const ex = this.completed;
    if (ex === undefined) return;
    this.parser[Slot.messageBegin] = undefined;
    const tail = this.completedTail;
    this.completed = undefined;
    this.completedTail = undefined;
    if (!this.destroyed) this.pool.release(this);
    ex.handler.onComplete(tail);
  }

  private onData(d: Buffer): void {
    const ex = this.exchange;
    if (ex === undefined) {
      // Bytes on an idle connection: the backend is not speaking HTTP/1.1 as expected.
      this.destroy();
      return;
    }
    ex.answered = true;
    this.afterRead(this.parser.execute(d));
  }

  private parseFailed(r: Error): void {
    this.held = undefined;
    const code = (r as { code?: string }).code ?? 'HPE_INVALID';
    const current = this.exchange;
    if (current !== undefined)
      current.fail(new UpstreamError(`invalid response from backend: ${r.message}`, code));
    else this.destroy();
  }

  /** Stops reading from the backend (the client socket is full). */
  pause(): void {
    if (this.destroyed) return;
    if (this.handle !== undefined) this.handle.readStop();
    else this.socket.pause();
  }

  resume(): void {
    if (this.handle === undefined) this.socket.resume();
    else if (!this.destroyed) this.handle.readStart();
  }

  private onEnd(): void {
    const ex = this.exchange;
    if (ex !== undefined) {
      // A body delimited by the connection's end completes here.
      const r = this.parser.finish();
      if (!(r instanceof Error)) this.afterRead(0);
      if (this.exchange !== undefined) {
        this.exchange.fail(
          r instanceof Error
            ? new UpstreamError(`invalid response from backend: ${r.message}`, 'UND_ERR_SOCKET')
            : new UpstreamError('the backend closed the connection', 'UND_ERR_SOCKET'),
        );
      }
    }
    this.destroy();
  }

  private onSocketError(err: Error): void {
    const ex = this.exchange;
    if (ex !== undefined) ex.fail(err);
    this.destroy();
  }

  private onClose(): void {
    this.destroyed = true;
    const ex = this.exchange;
    if (ex !== undefined) ex.fail(new UpstreamError('the backend connection closed', 'UND_ERR_SOCKET'));
    this.pool.forget(this);
    releaseParser(this.parser, this.handle !== undefined);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.socket.destroy();
    this.pool.forget(this);
  }
}

export class UpstreamPool {
  readonly hostHeader: string;
  private readonly idle: Connection[] = [];
  /**
   * Every connection, idle or carrying an exchange: what the ticker checks (an exchange under way is
   * either on a connection or in `waiting`). Deliberately no Set of exchanges: one that changes at
   * every request is rehashed every few dozen of them, and V8 links each obsolete table to its
   * successor (for live iterators) — old, dead tables then kept every later table and the exchanges
   * in them alive through each scavenge (nepotism), promoting ~30 % of what a request allocates and
   * making every scavenge 4–5 ms instead of 0.5 (docs/ingress.md).
   */
  private readonly all = new Set<Connection>();
  private readonly waiting: Exchange[] = [];
  private ticker: NodeJS.Timeout | undefined;
  private readonly tickMs: number;
  private closed = false;
  private draining = false;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly timeouts: UpstreamTimeouts,
    private readonly maxConnections = 256,
  ) {
    this.hostHeader = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const shortest = Math.min(timeouts.connectMs, timeouts.headersMs, timeouts.bodyMs, IDLE_MS);
    this.tickMs = Math.max(10, Math.min(1_000, Math.floor(shortest / 5)));
  }

  /**
   * Exchanges under way: on a connection (every connection not idle carries one; a connection is put
   * back in the same step its exchange ends) or queued for one. Counted from the structures the pool
   * keeps anyway, so least-busy balancing adds no bookkeeping to the hot path.
   */
  get busy(): number {
    return this.all.size - this.idle.length + this.waiting.length;
  }

  dispatch(req: UpstreamRequest, handler: UpstreamHandler): void {
    const ex = new Exchange(this, req, handler);
    handler.onConnect(ex.abort);
    if (ex.phase === 'done') return;
    if (this.closed) {
      ex.fail(new UpstreamError('upstream pool closed', 'UND_ERR_DESTROYED'));
      return;
    }
    this.armTicker();
    this.start(ex, false);
  }

  /** Gives `ex` a connection: an idle one (unless `fresh`), a new one, or a place in the queue. */
  start(ex: Exchange, fresh: boolean): void {
    if (!fresh) {
      let conn = this.idle.pop();
      while (conn !== undefined && conn.destroyed) conn = this.idle.pop();
      if (conn !== undefined) {
        conn.reused = true;
        ex.send(conn);
        return;
      }
    }
    if (this.all.size >= this.maxConnections && !fresh) {
      // Waiting for a free connection counts against the connect timeout: connections pinned by slow
      // answers must not hold the requests queued behind them forever.
      ex.deadline = performance.now() + this.timeouts.connectMs;
      this.waiting.push(ex);
      return;
    }
    const conn = new Connection(this);
    this.all.add(conn);
    conn.exchange = ex;
    ex.conn = conn;
    ex.phase = 'connecting';
    ex.deadline = performance.now() + this.timeouts.connectMs;
  }

  release(conn: Connection): void {
    if (this.draining || this.closed) {
      conn.destroy();
      return;
    }
    const next = this.waiting.shift();
    if (next !== undefined) {
      conn.reused = true;
      next.send(conn);
      return;
    }
    conn.idleSince = performance.now();
    this.idle.push(conn);
  }

  unqueue(ex: Exchange): void {
    const i = this.waiting.indexOf(ex);
    if (i !== -1) this.waiting.splice(i, 1);
  }

  forget(conn: Connection): void {
    if (!this.all.delete(conn)) return;
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    // A freed slot lets a queued exchange connect.
    const next = this.waiting.shift();
    if (next !== undefined) this.start(next, true);
  }

  private armTicker(): void {
    if (this.ticker !== undefined) return;
    this.ticker = setInterval(() => this.tick(), this.tickMs);
    this.ticker.unref();
  }

  private tick(): void {
    const now = performance.now();
    // A failed exchange destroys its connection (deleted from `all` while iterating: allowed) and may
    // start a queued one on a new connection (then visited too, with a fresh deadline).
    for (const conn of this.all) {
      const ex = conn.exchange;
      if (ex !== undefined && ex.deadline <= now) this.timeOut(ex);
    }
    for (const ex of this.waiting.filter((w) => w.deadline <= now)) this.timeOut(ex);
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i] as Connection;
      if (now - conn.idleSince > IDLE_MS) conn.destroy();
    }
    if (this.all.size === 0 && this.waiting.length === 0 && this.ticker !== undefined) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  private timeOut(ex: Exchange): void {
    const code =
      ex.phase === 'connecting'
        ? ex.conn === undefined
          ? 'UND_ERR_QUEUE_TIMEOUT'
          : 'UND_ERR_CONNECT_TIMEOUT'
        : ex.phase === 'waiting'
          ? 'UND_ERR_HEADERS_TIMEOUT'
          : 'UND_ERR_BODY_TIMEOUT';
    ex.fail(new UpstreamError(`backend ${this.hostHeader}: ${code}`, code));
  }

  /** For a backend taken out of rotation: what is under way finishes, then its connections close. */
  closeWhenIdle(): void {
    this.draining = true;
    for (const conn of [...this.idle]) conn.destroy();
  }

  /** Fails what is under way or queued and closes every connection. */
  close(): void {
    this.closed = true;
    const err = new UpstreamError('upstream pool closed', 'UND_ERR_DESTROYED');
    for (const ex of [...this.waiting]) ex.fail(err);
    this.waiting.length = 0;
    for (const conn of [...this.all]) conn.exchange?.fail(err);
    for (const conn of [...this.all]) conn.destroy();
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.ticker = undefined;
  }
}
