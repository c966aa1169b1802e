/**
 * Forwards one client request to one backend and streams the answer back, through the backend's
 * UpstreamPool (upstream.ts) with a handler object rather than intermediate streams, because the proxy
 * is CPU-bound and this is the hot path; backpressure is kept in both directions (the request body is
 * paused while the backend socket is full; response chunks pause the backend socket while the client
 * socket is full).
 *
 * Owns the mapping of backend failures to answers: connection failure → 502, timeout → 504, never a
 * crash; once the response has started, a failure can only cut the client connection.
 */
import type { Backend } from './backends.js';
import { BodyTooLarge, ClientRequestError } from './body-limit.js';
import type { ClientRequest, RequestBody } from './client-request.js';
import { answerError, type ClientResponse, type ResponseWatcher } from './client-response.js';
import { clientResponseHeaders } from './headers.js';
import type { UpstreamHandler } from './upstream.js';

export type ForwardOutcome = 'ok' | 'upstream-error' | 'client-gone' | 'retried' | 'rejected';

export interface ForwardRequest {
  req: ClientRequest;
  backend: Backend;
  headers: string[];
  /** The request body to stream upstream, or null. */
  body: RequestBody | null;
  /**
   * Called exactly once, when the upstream response has been completely received or has failed.
   * `connectFailed` means the connection to the backend failed (it is marked failed); whether the
   * request may be retried elsewhere is decided here (see `retry`).
   */
  done(outcome: ForwardOutcome, info: { status: number; connectFailed: boolean; error?: Error }): void;
  /**
   * Called on a connection failure before any response when a retry cannot duplicate a write (nothing
   * can have reached the backend, or the method is GET/HEAD/OPTIONS): returns true when it has dispatched the
   * request to another backend (this attempt then ends with outcome 'retried' and answers nothing).
   */
  retry?: () => boolean;
  /** Sees the response as it goes to the client (mirror comparison); absent on the fast path. */
  tap?: ResponseTap;
}

export interface ResponseTap {
  onHeaders(status: number, headers: string[]): void;
  onData(chunk: Buffer): void;
}

const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_QUEUE_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);
/** 504 answers that say which limit was hit, where the operator could not otherwise tell. */
const TIMEOUT_TEXT: Record<string, string> = {
  UND_ERR_QUEUE_TIMEOUT:
    'Gateway Timeout: no backend connection became free within upstreamConnectTimeoutMs (all in use)',
};
/** Failures before a connection existed: nothing of the request can have reached the backend. */
const NOT_CONNECTED_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/**
 * Connection-level failures (the backend is marked failed). A reset or a closed socket may come after
 * the backend received the request, so only idempotent requests are retried after one (as nginx does).
 */
const CONNECT_CODES = new Set([...NOT_CONNECTED_CODES, 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** Methods whose repetition cannot duplicate a write (RFC 9110 safe methods; nginx retries these). */
export function retriableMethod(method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

function errorCode(err: Error): string {
  return (err as { code?: string }).code ?? '';
}

class ClientGone extends Error {
  constructor() {
    super('client closed the connection before the response was complete');
    this.name = 'ClientGone';
  }
}

/**
 * UpstreamPool handler for one attempt, and the watcher of the client connection: a class rather than
 * per-request closures, since this runs for every request. Propagates a client abort upstream, streams
 * the response with backpressure.
 */
class ForwardHandler implements UpstreamHandler, ResponseWatcher {
  private abortFn: ((err?: Error) => void) | undefined = undefined;
  private finished = false;
  private status = 0;
  private responseStarted = false;
  private clientGone = false;
  private resume: (() => void) | undefined = undefined;
  private readonly res: ClientResponse;

  constructor(private readonly f: ForwardRequest) {
    this.res = f.req.response;
    // A retry replaces the previous (finished) attempt on the same response.
    this.res.watcher = this;
  }

  private finish(outcome: ForwardOutcome, connectFailed: boolean, error?: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.f.done(outcome, { status: this.status, connectFailed, error });
  }

  /** The client connection closed: abort upstream, so the backend stops working on an answer nobody reads. */
  clientClosed(): void {
    if (this.finished || this.res.finished) return;
    this.clientGone = true;
    this.abortFn?.(new ClientGone());
  }

  clientDrained(): void {
    this.resume?.();
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortFn = abort;
    if (this.clientGone) abort(new ClientGone());
  }

  onHeaders(statusCode: number, rawHeaders: string[], resume: () => void, statusText: string): boolean {
    this.status = statusCode;
    this.responseStarted = true;
    const headers = clientResponseHeaders(rawHeaders);
    this.f.tap?.onHeaders(statusCode, headers);
    this.res.writeHead(statusCode, statusText, headers);
    this.resume = resume;
    // The client still has an earlier write to take: the backend waits rather than the proxy buffering.
    return this.res.ready();
  }

  onData(chunk: Buffer): boolean {
    this.f.tap?.onData(chunk);
    return this.res.write(chunk);
  }

  onComplete(tail?: Buffer): void {
    if (tail === undefined) this.res.end();
    else {
      this.f.tap?.onData(tail);
      this.res.end(tail);
    }
    this.finish('ok', false);
  }

  onError(err: Error): void {
    const res = this.res;
    if (this.clientGone || err instanceof ClientGone) {
      if (!res.destroyed) res.destroy();
      this.finish('client-gone', false, err);
      return;
    }
    const code = errorCode(err);
    const connectFailed = !this.responseStarted && CONNECT_CODES.has(code);
    if (this.responseStarted) {
      // Headers are out: the only honest signal left is cutting the connection.
      res.destroy();
      this.finish('upstream-error', false, err);
      return;
    }
    // The retry is dispatched before this attempt is marked done, so the universe never looks
    // drained in between. A reset may come after the backend got the request: a write is not repeated.
    const retrySafe = NOT_CONNECTED_CODES.has(code) || retriableMethod(this.f.req.method);
    if (connectFailed && retrySafe && this.f.retry?.()) {
      this.finish('retried', true, err);
      return;
    }
    if (err instanceof BodyTooLarge) {
      this.status = 413;
      answerError(res, 413, 'Payload Too Large', { close: true });
      this.finish('rejected', false, err);
      return;
    }
    if (err instanceof ClientRequestError) {
      // The client's request failed on our side (malformed body, request deadline): its answer.
      this.status = err.status;
      answerError(res, err.status, err.message, { close: true });
      this.finish('rejected', false, err);
      return;
    }
    this.status = TIMEOUT_CODES.has(code) ? 504 : 502;
    answerError(
      res,
      this.status,
      this.status === 504 ? (TIMEOUT_TEXT[code] ?? 'Gateway Timeout') : 'Bad Gateway',
    );
    this.finish('upstream-error', connectFailed, err);
  }
}

export function forward(f: ForwardRequest): void {
  const { req, backend } = f;
  const url = req.url;
  backend.upstream.dispatch(
    {
      path: backend.prefix === '' ? url : backend.prefix + url,
      method: req.method,
      headers: f.headers,
      body: f.body,
    },
    new ForwardHandler(f),
  );
}
