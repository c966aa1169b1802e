/**
 * The answer to one client request, written straight to the client socket: status line and headers
 * serialised once, framing chosen as node:http would (the backend's Content-Length kept, else chunked
 * for HTTP/1.1, else close-delimited; none for HEAD, 1xx, 204 and 304), and the head, a small body and
 * the end sent in one write. Backpressure and the client going away are reported to one
 * watcher object (the forward in progress) rather than through events, since this is the hot path.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { writeHeadAndBody } from './socket-write.js';

/** Who hears about the client connection: the forward in progress, or the hold queue. */
export interface ResponseWatcher {
  clientClosed(): void;
  clientDrained(): void;
}

/** What a response needs from its connection. */
export interface ResponseConnection {
  readonly socket: Socket;
  /** Whether the connection must close after this response (decided when the head is written). */
  mustClose(res: ClientResponse): boolean;
  responseEnded(res: ClientResponse): void;
  awaitDrain(res: ClientResponse): void;
  destroy(): void;
}

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const LAST_CHUNK = '\r\n0\r\n\r\n';

export class ClientResponse {
  headersSent = false;
  /** end() was called. */
  finished = false;
  /** The connection is gone. */
  destroyed = false;
  /** Close the connection after this response (answer to a refused body, HTTP/1.0 without length…). */
  closeAfter = false;
  watcher: ResponseWatcher | undefined = undefined;
  private chunked = false;
  private noBody = false;
  /** The serialised head, sent with the first body bytes or the end. */
  private head: string | undefined = undefined;

  constructor(
    private readonly conn: ResponseConnection,
    private readonly isHead: boolean,
    readonly http10: boolean,
  ) {}

  /** Interim answer to `Expect: 100-continue`, sent when the proxy decides to read the body. */
  writeContinue(): void {
    if (this.headersSent || this.destroyed) return;
    this.conn.socket.write(CONTINUE, 'latin1');
  }

  /** Headers: flat [name, value, …], hop-by-hop already removed. */
  writeHead(status: number, statusText: string, headers: readonly string[]): void {
    if (this.headersSent) return;
    this.headersSent = true;
    let head = `HTTP/1.1 ${status} ${statusText || (STATUS_CODES[status] ?? '')}\r\n`;
    let hasLength = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      head += `${name}: ${headers[i + 1] as string}\r\n`;
    }
    this.noBody = this.isHead || status === 204 || status === 304 || status < 200;
    if (!this.noBody && !hasLength) {
      // Without a length the body is chunked, or for an HTTP/1.0 client delimited by closing.
      if (this.http10) this.closeAfter = true;
      else {
        this.chunked = true;
        head += 'transfer-encoding: chunked\r\n';
      }
    }
    if (this.conn.mustClose(this)) this.closeAfter = true;
    if (this.closeAfter) head += 'connection: close\r\n';
    else if (this.http10) head += 'connection: keep-alive\r\n';
    this.head = `${head}\r\n`;
  }

  /** Whether the client takes more now; if not, the watcher hears clientDrained when it does. */
  ready(): boolean {
    if (this.destroyed || !this.conn.socket.writableNeedDrain) return true;
    this.conn.awaitDrain(this);
    return false;
  }

  /** A body chunk; false when the client socket is full (the watcher hears clientDrained later). */
  write(chunk: Buffer): boolean {
    if (this.destroyed || this.finished || this.noBody || chunk.length === 0) return true;
    const socket = this.conn.socket;
    const head = this.head;
    if (head !== undefined && !this.chunked) {
      this.head = undefined;
      const ok = writeHeadAndBody(socket, head, chunk);
      if (!ok) this.conn.awaitDrain(this);
      return ok;
    }
    socket.cork();
    this.flushHead(socket);
    let ok: boolean;
    if (this.chunked) {
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
    } else ok = socket.write(chunk);
    socket.uncork();
    if (!ok) this.conn.awaitDrain(this);
    return ok;
  }

  /** Ends the response, `tail` being its last body bytes: head, tail and end go out in one write. */
  end(tail?: Buffer | string): void {
    if (this.finished || this.destroyed) return;
    if (!this.headersSent) this.writeHead(200, 'OK', []);
    this.finished = true;
    const socket = this.conn.socket;
    const body = this.noBody || tail === undefined || tail.length === 0 ? undefined : tail;
    const head = this.head;
    if (!this.chunked) {
      this.head = undefined;
      if (body === undefined) {
        if (head !== undefined) socket.write(head, 'latin1');
      } else if (head === undefined) socket.write(body);
      else writeHeadAndBody(socket, head, body);
    } else {
      socket.cork();
      this.flushHead(socket);
      if (body !== undefined) {
        if (this.chunked) socket.write(`${Buffer.byteLength(body).toString(16)}\r\n`, 'latin1');
        socket.write(body);
      }
      if (this.chunked) socket.write(body === undefined ? LAST_CHUNK.slice(2) : LAST_CHUNK, 'latin1');
      socket.uncork();
    }
    this.conn.responseEnded(this);
  }

  /** Cuts the client connection (the only signal left once headers are out). */
  destroy(): void {
    this.conn.destroy();
  }

  private flushHead(socket: Socket): void {
    if (this.head === undefined) return;
    socket.write(this.head, 'latin1');
    this.head = undefined;
  }
}

/**
 * A short plain-text error answer; safe to call for any request: once headers are out, the connection
 * is cut instead. `close` closes the connection after it (an unread body would follow).
 */
export function answerError(
  res: ClientResponse,
  status: number,
  text: string,
  opts: { close?: boolean; headers?: readonly string[] } = {},
): void {
  if (res.headersSent || res.destroyed) {
    if (!res.destroyed) res.destroy();
    return;
  }
  const body = `${text}\n`;
  if (opts.close === true) res.closeAfter = true;
  res.writeHead(status, STATUS_CODES[status] ?? '', [
    'content-type',
    'text/plain; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    ...(opts.headers ?? []),
  ]);
  res.end(body);
}
