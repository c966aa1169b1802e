/**
 * Why a request body failed on the client side, so that forward.ts answers precisely: a body over the
 * size limit (413; a declared Content-Length over it is refused before a byte is read, a chunked body
 * is counted as it streams and cut when it passes the limit), or a client-side failure inside the body
 * (a parse error → 400, the whole-request deadline → 408, the connection gone).
 */

export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`request body larger than ${limit} bytes`);
    this.name = 'BodyTooLarge';
  }
}

export class ClientRequestError extends Error {
  constructor(
    /** The answer the client gets if nothing was answered yet. */
    readonly status: number,
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'ClientRequestError';
  }
}
