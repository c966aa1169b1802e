/**
 * Forwards one client request to one backend and streams the answer back. Uses undici's dispatch
 * handler directly (no intermediate Readable per request) because the proxy is CPU-bound and this is
 * the hot path; backpressure is kept in both directions (undici reads the request body as the backend
 * accepts it; response chunks pause undici when the client socket is full).
 *
 * Owns the mapping of backend failures to answers: connection failure → 502, timeout → 504, never a
 * crash; once the response has started, a failure can only cut the client connection.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Backend } from './backends.js';
import { BodyTooLarge } from './body-limit.js';
import { clientResponseHeaders } from './headers.js';

export type ForwardOutcome = 'ok' | 'upstream-error' | 'client-gone' | 'retried' | 'rejected';

export interface ForwardRequest {
  req: IncomingMessage;
  res: ServerResponse;
  backend: Backend;
  headers: string[];
  /** The request body to stream upstream (the request itself, or a size-limiting wrapper), or null. */
  body: Readable | null;
  /**
   * Called exactly once, when the upstream response has been completely received or has failed.
   * `connectFailed` means nothing reached the backend, so a bodyless request may be retried elsewhere.
   */
  done(outcome: ForwardOutcome, info: { status: number; connectFailed: boolean; error?: Error }): void;
  /**
   * Called on a connection failure before any response: returns true when it has dispatched the
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

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

function errorCode(err: Error): string {
  return (err as { code?: string }).code ?? '';
}

class ClientGone extends Error {
  constructor() {
    super('client closed the connection before the response was complete');
    this.name = 'ClientGone';
  }
}

export function forward(f: ForwardRequest): void {
  const { req, res, backend } = f;
  let abort: ((err?: Error) => void) | undefined;
  let finished = false;
  let status = 0;
  let responseStarted = false;
  let clientGone = false;

  const finish = (outcome: ForwardOutcome, connectFailed: boolean, error?: Error): void => {
    if (finished) return;
    finished = true;
    res.removeListener('close', onClientClose);
    f.done(outcome, { status, connectFailed, error });
  };

  // Propagate a client abort upstream, so the backend stops working on an answer nobody reads.
  const onClientClose = (): void => {
    if (finished || res.writableFinished) return;
    clientGone = true;
    abort?.(new ClientGone());
  };
  res.on('close', onClientClose);

  const handler: Dispatcher.DispatchHandler = {
    onConnect(abortFn) {
      abort = abortFn;
      if (clientGone) abortFn(new ClientGone());
    },
    onHeaders(statusCode, rawHeaders, resume, statusText) {
      status = statusCode;
      responseStarted = true;
      const headers = clientResponseHeaders(rawHeaders as Buffer[]);
      f.tap?.onHeaders(statusCode, headers);
      res.writeHead(statusCode, statusText, headers);
      onDrain = resume;
      return true;
    },
    onData(chunk) {
      f.tap?.onData(chunk);
      if (res.write(chunk)) return true;
      res.once('drain', resumeUpstream);
      return false;
    },
    onComplete() {
      res.end();
      finish('ok', false);
    },
    onError(err) {
      if (clientGone || err instanceof ClientGone) {
        if (!res.destroyed) res.destroy();
        finish('client-gone', false, err);
        return;
      }
      const code = errorCode(err);
      const connectFailed = !responseStarted && CONNECT_CODES.has(code);
      if (responseStarted) {
        // Headers are out: the only honest signal left is cutting the connection.
        res.destroy(err);
        finish('upstream-error', false, err);
        return;
      }
      // The retry is dispatched before this attempt is marked done, so the universe never looks
      // drained in between.
      if (connectFailed && f.retry?.()) {
        finish('retried', true, err);
        return;
      }
      if (err instanceof BodyTooLarge || err.cause instanceof BodyTooLarge) {
        status = 413;
        answerError(res, 413, 'Payload Too Large', { connection: 'close' });
        finish('rejected', false, err);
        return;
      }
      status = TIMEOUT_CODES.has(code) ? 504 : 502;
      answerError(res, status, status === 504 ? 'Gateway Timeout' : 'Bad Gateway');
      finish('upstream-error', connectFailed, err);
    },
  };

  let onDrain: (() => void) | undefined;
  const resumeUpstream = (): void => onDrain?.();

  const path = backend.prefix === '' ? (req.url ?? '/') : backend.prefix + (req.url ?? '/');
  backend.pool.dispatch(
    {
      path,
      method: req.method as Dispatcher.HttpMethod,
      headers: f.headers,
      body: f.body,
      // Retrying is ours to decide (another backend of the same universe), not the pool's.
      idempotent: false,
    },
    handler,
  );
}

/** A short plain-text error answer; safe to call for any request that has no response headers yet. */
export function answerError(
  res: ServerResponse,
  status: number,
  text: string,
  extra?: Record<string, string>,
): void {
  if (res.headersSent || res.destroyed) {
    if (!res.destroyed) res.destroy();
    return;
  }
  const body = `${text}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}
