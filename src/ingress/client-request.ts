/**
 * One request as the front end (client-connection.ts) parsed it: method, target, the flat raw headers
 * llhttp handed over, the few header values the proxy acts on, and its body as a push source. The body
 * is not a stream: the upstream client attaches itself as the sink and the chunks go straight from the
 * parser to the backend socket, with backpressure through pause()/resume(), because the proxy is
 * CPU-bound and a Readable (plus a Transform for the size limit) per request costs more than the
 * forwarding itself.
 */
import { BodyTooLarge } from './body-limit.js';
import type { ClientResponse } from './client-response.js';

/** What receives a request body (the upstream exchange). */
export interface BodySink {
  onBodyData(chunk: Buffer): void;
  onBodyEnd(): void;
  onBodyError(err: Error): void;
}

/** Reading control of the client connection a body comes from. */
export interface BodyFlow {
  bodyFlowChanged(): void;
}

/**
 * A request body as it arrives: chunks before a sink is attached (a held request, or a backend
 * connection still being set up) are kept, bounded because the connection stops reading while the body
 * has no sink. Counts what arrives against the size limit (413 for chunked bodies).
 */
export class RequestBody {
  private sink: BodySink | undefined = undefined;
  private buffered: Buffer[] | undefined = undefined;
  /** The sink asked to stop (its socket is full). */
  paused = false;
  ended = false;
  error: Error | undefined = undefined;
  received = 0;
  /** Sees each chunk as it goes to the sink (the mirror's copy of the request). */
  tap: ((chunk: Buffer) => void) | undefined = undefined;

  constructor(
    private readonly limit: number,
    private readonly flow: BodyFlow,
  ) {}

  /** Whether the connection should keep reading for this body. */
  get wantsData(): boolean {
    return this.sink !== undefined && !this.paused;
  }

  get complete(): boolean {
    return this.ended || this.error !== undefined;
  }

  push(chunk: Buffer): void {
    if (this.complete) return;
    this.received += chunk.length;
    if (this.received > this.limit) {
      this.fail(new BodyTooLarge(this.limit));
      return;
    }
    const sink = this.sink;
    if (sink === undefined) (this.buffered ??= []).push(chunk);
    else {
      this.tap?.(chunk);
      sink.onBodyData(chunk);
    }
  }

  end(): void {
    if (this.complete) return;
    this.ended = true;
    this.sink?.onBodyEnd();
  }

  fail(err: Error): void {
    if (this.complete) return;
    this.error = err;
    this.buffered = undefined;
    this.sink?.onBodyError(err);
  }

  /** Hands over what was kept, then every chunk as it comes; reports an end or failure already seen. */
  attach(sink: BodySink): void {
    this.sink = sink;
    const kept = this.buffered;
    this.buffered = undefined;
    if (kept !== undefined) {
      for (const chunk of kept) {
        if (this.sink !== sink) return;
        this.tap?.(chunk);
        sink.onBodyData(chunk);
      }
    }
    if (this.sink !== sink) return;
    if (this.error !== undefined) sink.onBodyError(this.error);
    else if (this.ended) sink.onBodyEnd();
    else this.flow.bodyFlowChanged();
  }

  detach(): void {
    this.sink = undefined;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.flow.bodyFlowChanged();
  }
}

/** A request on a client connection, from its headers on. */
export class ClientRequest {
  constructor(
    readonly method: string,
    /** Path and query as received on the request line. */
    readonly url: string,
    /** Flat [name, value, …] as received. */
    readonly rawHeaders: string[],
    readonly remoteAddress: string,
    /** The client allows the connection to stay open after the answer (llhttp's verdict). */
    readonly keepAlive: boolean,
    /** Declared Content-Length, undefined for chunked or none. */
    readonly declaredLength: number | undefined,
    /** Lower-cased Expect value, when present. */
    readonly expect: string | undefined,
    /** Upgrade value (e.g. websocket), when the request asks for one. */
    readonly upgrade: string | undefined,
    readonly body: RequestBody | null,
    readonly response: ClientResponse,
  ) {}
}
