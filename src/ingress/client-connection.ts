/**
 * The server side of one client connection: HTTP/1.1 parsed by node's own llhttp (the parser and the
 * strictness node:http has: Content-Length with Transfer-Encoding, differing Content-Lengths, obs-fold,
 * bad chunk sizes, whitespace before the colon all fail with 400), reading the socket's libuv stream
 * directly. It replaces node:http's server because that server's per-request machinery
 * (IncomingMessage, ServerResponse, their stream state machines) cost more CPU than everything else
 * the proxy does (docs/ingress.md, "What bounds the throughput").
 *
 * Requests are answered in order, one at a time: the first in the queue is the active one; pipelined
 * requests after it are parsed (what arrived in the same read) and wait, and the connection stops
 * reading until it is their turn. A body is read only while something consumes it (the connection stops
 * reading while a request is held or the backend socket is full). Deadlines (headers, whole request,
 * idle keep-alive) are checked by the front end's one ticker, not a timer per request.
 */
import type { Socket } from 'node:net';
import { methods } from '_http_common';
import { ClientRequestError } from './body-limit.js';
import { ClientRequest, RequestBody, type BodyFlow } from './client-request.js';
import { ClientResponse, type ResponseConnection } from './client-response.js';
import { headRefusal, originForm } from './framing.js';
import { consumeSocket, HTTPParser, releaseParser, Slot, type StreamHandle } from './parser-stream.js';

export interface FrontEndLimits {
  headersMs: number;
  requestMs: number;
  idleMs: number;
  /** Time the client socket has to drain once full (a client not reading its answers is cut). */
  sendMs: number;
  maxBodyBytes: number;
}

/** What the front end hands requests to (the router). */
export interface RequestHandlers {
  request(req: ClientRequest, expectContinue: boolean): void;
  /** The socket is the handler's from here on; `head` is what the client sent after the request head. */
  upgrade(req: ClientRequest, socket: Socket, head: Buffer): void;
}

export interface ConnectionOwner {
  readonly limits: FrontEndLimits;
  readonly handlers: RequestHandlers;
  forget(conn: ClientConnection): void;
}

/** What the connection's deadline is about. */
type Waiting = 'headers' | 'request' | 'idle' | 'none';

/** Parse failures answered with something more precise than 400 (as node:http does). */
const PARSE_ERROR_STATUS: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 413,
};

function plainAnswer(status: number, text: string): string {
  return `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`;
}

export class ClientConnection implements ResponseConnection, BodyFlow {
  private readonly parser = new HTTPParser();
  private readonly handle: StreamHandle | undefined;
  /** Requests in arrival order; the first is the one being answered once `active` is set. */
  private readonly queue: ClientRequest[] = [];
  private active: ClientRequest | undefined = undefined;
  /** The request whose body the parser is reading. */
  private parsing: ClientRequest | undefined = undefined;
  private headerPairs: string[] = [];
  private urlParts = '';
  /** A request is being parsed whose deadline (headers or request) has been set from its beginning. */
  private inMessage = false;
  /**
   * A request head or a message end was parsed in the read being parsed: whatever follows it in that
   * read was not seen beginning (afterRead must not take the read for the start of a message).
   */
  private sawBoundary = false;
  /** A head has been parsed on this connection (before the first message, llhttp's clock is unset). */
  private begunOnce = false;
  /** Whether kOnMessageComplete is set (see completeCallback). */
  private completeSet = false;
  private upgradeRequest: ClientRequest | undefined = undefined;
  /** A parse failure to answer once the requests before it are answered. */
  private pendingError: { status: number; text: string } | undefined = undefined;
  /** No further request will be read: close after the active answer. */
  private closing = false;
  private closed = false;
  private reading = true;
  private advancing = false;
  private drainWaiting = false;
  /** performance.now() past which `waiting` has expired. */
  deadline: number;
  private waiting: Waiting = 'headers';
  /** performance.now() by which the full client socket must have drained (or, closing, finished). */
  sendDeadline = Infinity;
  /** Ending after a last answer: the send deadline stays until the socket is closed. */
  private ending = false;
  private readonly remoteAddress: string;

  constructor(
    readonly socket: Socket,
    private readonly owner: ConnectionOwner,
  ) {
    this.remoteAddress = socket.remoteAddress ?? '';
    this.deadline = performance.now() + owner.limits.headersMs;
    const parser = this.parser;
    parser.initialize(HTTPParser.REQUEST, {}, 0, HTTPParser.kLenientNone);
    // No kOnMessageBegin (messageBegan() reads llhttp's own clock instead), and kOnMessageComplete is
    // set only for requests with a body: each callback into JavaScript costs more than what it does
    // (docs/ingress.md, "What bounds the CPU per request").
    parser[Slot.headers] = (headers: string[], url: string) => {
      for (const h of headers) this.headerPairs.push(h);
      this.urlParts += url;
    };
    parser[Slot.headersComplete] = (
      major: number,
      minor: number,
      headers: string[] | undefined,
      method: number,
      url: string | undefined,
      _status: unknown,
      _statusText: unknown,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => this.onHeadersComplete(major, minor, headers, method, url, upgrade, keepAlive);
    parser[Slot.body] = (chunk: Buffer) => this.parsing?.body?.push(chunk);
    parser[Slot.execute] = (ret: number | Error) => this.afterRead(ret);
    this.handle = consumeSocket(socket, parser);
    socket.on('data', this.onData);
    // A client that half-closes is gone, as for node:http's server (allowHalfOpen off).
    socket.on('end', this.destroyListener);
    socket.on('error', this.destroyListener);
    socket.on('close', this.onClose);
  }

  /** Bytes read through 'data' events, where the socket could not be consumed directly. */
  private readonly onData = (d: Buffer): void => {
    const ret = this.parser.execute(d);
    this.afterRead(ret, d);
  };

  private readonly destroyListener = (): void => this.destroy();

  private readonly onMessageCompleteListener = (): void => this.onMessageComplete();

  /** kOnMessageComplete is called only while set: for a request with a body (or one being refused). */
  private completeCallback(wanted: boolean): void {
    if (this.completeSet === wanted) return;
    this.completeSet = wanted;
    this.parser[Slot.messageComplete] = wanted ? this.onMessageCompleteListener : undefined;
  }

  /**
   * When the message being parsed began (performance.now() of the read that brought its first byte):
   * what every client deadline of a request counts from. llhttp times it in C++ at its message-begin
   * (`parser.duration()`, what node:http's server deadlines use), so no callback into JavaScript is
   * needed per request, and a request pipelined behind another in one read is timed from that read.
   * Before the first head of a connection that clock is unset: then the message began in this read.
   */
  private messageBegan(): number {
    const now = performance.now();
    return this.begunOnce ? now - this.parser.duration() : now;
  }

  /**
   * A read arrived outside a request and completed no head: a request began (its headers deadline
   * runs). Bytes that follow a complete request in the same read are seen at the next read, so a
   * request pipelined that way runs under the idle deadline until then (never without a deadline),
   * and under its headers deadline from its true beginning afterwards.
   */
  private messageBegins(): void {
    this.inMessage = true;
    this.setWaiting('headers', this.messageBegan() + this.owner.limits.headersMs);
  }

  private onHeadersComplete(
    major: number,
    minor: number,
    headers: string[] | undefined,
    methodIndex: number,
    url: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    this.sawBoundary = true;
    this.begunOnce = true;
    let raw = headers;
    if (raw === undefined) {
      raw = this.headerPairs;
      this.headerPairs = [];
    }
    const target = originForm(url || this.urlParts);
    this.urlParts = '';
    const method = methods[methodIndex] ?? 'GET';
    let contentLength: string | undefined;
    let chunked = false;
    let expect: string | undefined;
    let upgradeValue: string | undefined;
    let transferEncoding: string | undefined;
    let hosts = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      const n = name.length;
      if (n !== 14 && n !== 17 && n !== 6 && n !== 7 && n !== 4) continue;
      const lower = name.toLowerCase();
      if (lower === 'content-length') contentLength = raw[i + 1];
      else if (lower === 'host') hosts++;
      else if (lower === 'transfer-encoding') {
        chunked = true;
        const value = raw[i + 1] as string;
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding},${value}`;
      } else if (lower === 'expect') expect = (raw[i + 1] as string).toLowerCase();
      else if (lower === 'upgrade') upgradeValue = raw[i + 1];
    }
    // llhttp has validated the framing: a Transfer-Encoding here ends in chunked and has no length.
    const declared = chunked || contentLength === undefined ? undefined : Number(contentLength);
    const body = chunked || (declared !== undefined && declared > 0);
    // The whole request's deadline counts from its first byte, not from a previous request's.
    const began = body ? this.messageBegan() : 0;
    this.inMessage = true;
    const response = new ClientResponse(this, method === 'HEAD', major === 0 || (major === 1 && minor === 0));
    const req = new ClientRequest(
      method,
      target,
      raw,
      this.remoteAddress,
      keepAlive,
      declared,
      expect,
      upgradeValue,
      body ? new RequestBody(this.owner.limits.maxBodyBytes, this) : null,
      response,
    );
    // Once the connection is closing, nothing after the last answered request is served.
    if (this.closing) {
      this.completeCallback(true);
      return 0;
    }
    const refusal = headRefusal(major, minor, hosts, transferEncoding);
    if (refusal !== undefined) {
      // Answered after the requests before it; its body, if any, is not read.
      this.completeCallback(true);
      this.closing = true;
      this.pendingError = refusal;
      this.advance();
      return 0;
    }
    if (upgrade) {
      // The parser stops after this head (2 = upgrade); the rest of the read belongs to the tunnel.
      this.completeCallback(true);
      this.upgradeRequest = req;
      return 2;
    }
    if (body) {
      this.completeCallback(true);
      this.parsing = req;
      this.setWaiting('request', began + this.owner.limits.requestMs);
      this.queue.push(req);
    } else {
      // Without a body the message is complete with its head: kOnMessageComplete's work is done here.
      this.completeCallback(false);
      this.inMessage = false;
      this.queue.push(req);
      this.setWaiting('none', Infinity);
    }
    this.advance();
    return 0;
  }

  private onMessageComplete(): void {
    this.inMessage = false;
    this.sawBoundary = true;
    // Trailers arrive through kOnHeaders just before this; they are not forwarded, and must not
    // become part of the next request's head (or its URL).
    if (this.headerPairs.length > 0) this.headerPairs = [];
    this.urlParts = '';
    const req = this.parsing;
    this.parsing = undefined;
    req?.body?.end();
    if (this.queue.length > 0) this.setWaiting('none', Infinity);
    else this.idle();
  }

  /** After each read the parser consumed: a parse failure, an upgrade, or reading control. */
  private afterRead(ret: number | Error, data?: Buffer): void {
    if (this.closed) return;
    // Bytes while no request was being read, completing neither a head nor a body: one began. (A read
    // that ended a body leaves inMessage false too; taking it for a beginning put an idle connection
    // under a headers deadline, answered 408.)
    if (!this.inMessage && !this.sawBoundary) this.messageBegins();
    this.sawBoundary = false;
    if (ret instanceof Error) {
      this.parseFailed(ret);
      return;
    }
    if (this.upgradeRequest !== undefined) {
      this.handOver(this.upgradeRequest, (data ?? this.parser.getCurrentBuffer()).subarray(ret));
      return;
    }
    this.updateReading();
  }

  private parseFailed(err: Error): void {
    const code = (err as { code?: string }).code ?? '';
    const status = PARSE_ERROR_STATUS[code] ?? 400;
    const text =
      status === 431
        ? 'Request Header Fields Too Large'
        : status === 413
          ? 'Payload Too Large'
          : 'Bad Request';
    this.closing = true;
    const body = this.parsing?.body;
    this.parsing = undefined;
    // A failure inside a body fails that request (its forward answers, or it fails when dispatched);
    // one in a head is answered after the requests before it.
    if (body !== undefined && body !== null && !body.complete)
      body.fail(new ClientRequestError(status, text, code));
    else this.pendingError = { status, text };
    this.updateReading();
    this.advance();
  }

  /** Starts the next request when none is being answered; answers a pending parse error at the end. */
  private advance(): void {
    if (this.advancing) return;
    this.advancing = true;
    while (!this.closed && this.active === undefined) {
      const next = this.queue[0];
      if (next === undefined) {
        const error = this.pendingError;
        if (error !== undefined) {
          this.pendingError = undefined;
          this.socket.end(plainAnswer(error.status, error.text), 'latin1');
          this.destroySoon();
        }
        break;
      }
      // A client not reading its answers is not given more of them (as node:http): the next pipelined
      // request waits for the socket to drain, so what the proxy buffers stays one answer deep.
      if (this.socket.writableNeedDrain) {
        this.waitForDrain();
        break;
      }
      this.active = next;
      this.start(next);
    }
    this.advancing = false;
  }

  private start(req: ClientRequest): void {
    const expect = req.expect;
    if (expect === undefined) this.owner.handlers.request(req, false);
    else if (expect === '100-continue' && !req.response.http10) this.owner.handlers.request(req, true);
    else {
      // node:http's answer to an expectation it cannot meet.
      req.response.closeAfter = true;
      req.response.writeHead(417, 'Expectation Failed', ['content-length', '0']);
      req.response.end();
    }
  }

  // ResponseConnection

  mustClose(res: ClientResponse): boolean {
    const req = this.active;
    if (req === undefined || req.response !== res) return true;
    // A connection closing after a parse error still answers the requests before it; the last says so.
    if (this.closing && this.queue.length <= 1) return true;
    return !req.keepAlive || (req.body !== null && !req.body.complete);
  }

  responseEnded(res: ClientResponse): void {
    const req = this.active;
    if (req === undefined || req.response !== res) return;
    this.queue.shift();
    this.active = undefined;
    // Told the client it closes (a body the answer did not wait for is still on the wire, so the next
    // request could not be found): what was pipelined after it is not answered.
    if (res.closeAfter) {
      this.closing = true;
      this.pendingError = undefined;
      if (req.body !== null)
        req.body.fail(new ClientRequestError(400, 'answered before the body', 'ANSWERED'));
      this.dropQueue();
      this.socket.end();
      this.destroySoon();
      return;
    }
    if (this.queue.length === 0 && !this.inMessage) this.idle();
    this.advance();
    this.updateReading();
  }

  awaitDrain(res: ClientResponse): void {
    if (this.active?.response === res) this.waitForDrain();
  }

  /** The client socket is full: wait for 'drain', and cut the client if it does not come in time. */
  private waitForDrain(): void {
    if (this.sendDeadline === Infinity) this.sendDeadline = performance.now() + this.owner.limits.sendMs;
    if (this.drainWaiting) return;
    this.drainWaiting = true;
    this.socket.once('drain', this.onDrain);
  }

  private readonly onDrain = (): void => {
    this.drainWaiting = false;
    // Handed over to an upgrade: the socket's reading is no longer ours to control.
    if (this.closed) return;
    if (!this.ending) this.sendDeadline = Infinity;
    this.active?.response.watcher?.clientDrained();
    this.advance();
    this.updateReading();
  };

  destroy(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }

  // BodyFlow

  bodyFlowChanged(): void {
    this.updateReading();
  }

  /**
   * Reads only when it is useful: not while a pipelined request waits its turn, nor while the body
   * being read has nowhere to go (held, or the backend socket is full), nor, beyond the body being
   * answered, while the client is not reading what it is sent (its socket needs drain).
   */
  private updateReading(): void {
    let want = !this.closed && !this.closing && this.queue.length <= 1;
    const body = this.parsing?.body;
    if (want && body !== undefined && body !== null && !body.wantsData) want = false;
    // The body of the request being answered still flows (bounded by the backend's backpressure, as
    // node:http keeps reading it): a backend may need all of it before it drains its answer.
    const activeBody = this.parsing !== undefined && this.parsing === this.active;
    if (want && !activeBody && this.socket.writableNeedDrain) {
      want = false;
      this.waitForDrain();
    }
    if (want === this.reading) return;
    this.reading = want;
    const handle = this.handle;
    if (this.socket.destroyed) return;
    if (handle !== undefined) {
      if (want) handle.readStart();
      else handle.readStop();
    } else if (want) this.socket.resume();
    else this.socket.pause();
  }

  private setWaiting(waiting: Waiting, deadline: number): void {
    this.waiting = waiting;
    this.deadline = deadline;
  }

  private idle(): void {
    this.setWaiting('idle', performance.now() + this.owner.limits.idleMs);
  }

  /** Called by the front end's ticker: enforces the headers, request, idle and send deadlines. */
  checkDeadline(now: number): void {
    if (this.closed) return;
    if (now >= this.sendDeadline) {
      // The client has not taken what it was sent: the answer (and its backend connection) is let go.
      this.destroy();
      return;
    }
    if (now < this.deadline) return;
    const waiting = this.waiting;
    this.setWaiting('none', Infinity);
    if (waiting === 'idle') this.destroy();
    else if (waiting === 'headers') {
      // Slowloris guard: 408 when nothing is being answered, else the connection is cut.
      if (this.active === undefined && this.queue.length === 0) {
        this.closing = true;
        this.socket.end(plainAnswer(408, 'Request Timeout'), 'latin1');
        this.destroySoon();
      } else this.destroy();
    } else if (waiting === 'request') {
      const body = this.parsing?.body;
      this.closing = true;
      this.updateReading();
      if (body !== undefined && body !== null)
        body.fail(new ClientRequestError(408, 'Request Timeout', 'TIMEOUT'));
      else this.destroy();
    }
  }

  /** Gives the socket to the upgrade handler: the parser lets go of it and its deadlines stop. */
  private handOver(req: ClientRequest, head: Buffer): void {
    this.upgradeRequest = undefined;
    if (this.queue.length > 0 || req.method === 'CONNECT') {
      // An upgrade behind unanswered requests, or a CONNECT tunnel: not something this proxy does.
      this.closing = true;
      this.pendingError = {
        status: req.method === 'CONNECT' ? 405 : 400,
        text: req.method === 'CONNECT' ? 'Method Not Allowed' : 'Bad Request',
      };
      this.updateReading();
      this.advance();
      return;
    }
    this.closed = true;
    this.owner.forget(this);
    const socket = this.socket;
    socket.off('data', this.onData);
    socket.off('end', this.destroyListener);
    socket.off('close', this.onClose);
    if (this.handle !== undefined) {
      if (!this.reading) this.handle.readStart();
    } else if (!this.reading) socket.resume();
    releaseParser(this.parser, this.handle !== undefined);
    // Our 'data' listener is gone: what arrives is buffered until the handler pipes the socket.
    socket.pause();
    this.owner.handlers.upgrade(req, socket, head);
  }

  private readonly onClose = (): void => {
    this.closed = true;
    this.owner.forget(this);
    const active = this.active;
    if (active !== undefined) {
      active.response.destroyed = true;
      active.response.watcher?.clientClosed();
    }
    this.dropQueue();
    releaseParser(this.parser, this.handle !== undefined);
  };

  /** Requests that will not be answered (the connection is closing or closed). */
  private dropQueue(): void {
    for (const req of this.queue) {
      req.response.destroyed = true;
      req.body?.fail(new ClientRequestError(400, 'client connection closed', 'ECONNRESET'));
    }
    this.queue.length = 0;
    this.active = undefined;
  }

  /** Closes once what was written has gone out, or when the send deadline says it never will. */
  private destroySoon(): void {
    this.closing = true;
    this.ending = true;
    this.updateReading();
    const socket = this.socket;
    this.sendDeadline = Math.min(this.sendDeadline, performance.now() + this.owner.limits.sendMs);
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  }
}
