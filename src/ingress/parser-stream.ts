/**
 * Node's built-in llhttp parser (`_http_common.HTTPParser`, the one node:http uses) and the way both
 * sides of the proxy feed it: straight from the socket's libuv stream (`consume`, as node:http's server
 * does), so bytes skip the Readable machinery. Shared by the front end (client-connection.ts) and the
 * upstream client (upstream.ts).
 */
import type { Socket } from 'node:net';
import { HTTPParser } from '_http_common';

if (typeof HTTPParser !== 'function' || typeof HTTPParser.kOnHeadersComplete !== 'number') {
  throw new Error('this Node.js has no usable built-in HTTP parser (_http_common.HTTPParser)');
}

export { HTTPParser };

/** Where the parser's callbacks go (parser[Slot.headersComplete] = …). */
export const Slot = {
  messageBegin: HTTPParser.kOnMessageBegin,
  headers: HTTPParser.kOnHeaders,
  headersComplete: HTTPParser.kOnHeadersComplete,
  body: HTTPParser.kOnBody,
  messageComplete: HTTPParser.kOnMessageComplete,
  execute: HTTPParser.kOnExecute,
} as const;

/** The libuv stream behind a net.Socket, as far as reading control goes. */
export interface StreamHandle {
  isStreamBase?: boolean;
  _consumed?: boolean;
  readStart(): number;
  readStop(): number;
}

/**
 * Lets `parser` read `socket` directly (each read then reaches the parser's kOnExecute callback, not
 * 'data' events). Returns the handle to pause and resume reading with, or undefined when the socket
 * cannot be consumed (then its 'data' events must be fed to parser.execute()).
 */
export function consumeSocket(socket: Socket, parser: HTTPParser): StreamHandle | undefined {
  const handle = (socket as unknown as { _handle?: StreamHandle })._handle;
  if (handle?.isStreamBase !== true || handle._consumed === true) return undefined;
  handle._consumed = true;
  parser.consume(handle);
  return handle;
}

/**
 * Lets go of a parser whose socket closed or was handed over. The C++ object is deleted only once the
 * stack has unwound (as node:http does): this may run inside one of the parser's own callbacks, and
 * deleting it there is a use-after-free (a crash, not an exception).
 */
export function releaseParser(parser: HTTPParser, consumed: boolean): void {
  if (consumed) parser.unconsume();
  parser.remove();
  setImmediate(closeParser, parser);
}

function closeParser(parser: HTTPParser): void {
  parser.close();
}
