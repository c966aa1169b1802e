/**
 * Types for node's built-in llhttp binding (`_http_common`), the parser node:http itself uses. Not a
 * documented API; the ingress parses client requests (client-connection.ts) and backend responses
 * (upstream.ts) with it because it is the same strict C parser node uses, at a fraction of the cost of
 * node:http's server machinery or a JavaScript/WebAssembly parser. Checked at load time (parser-stream.ts).
 */
declare module '_http_common' {
  export class HTTPParser {
    static readonly REQUEST: number;
    static readonly RESPONSE: number;
    static readonly kOnMessageBegin: number;
    static readonly kOnHeaders: number;
    static readonly kOnHeadersComplete: number;
    static readonly kOnBody: number;
    static readonly kOnMessageComplete: number;
    static readonly kOnExecute: number;
    static readonly kLenientNone: number;
    initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
    execute(data: Buffer): number | Error;
    finish(): undefined | Error;
    /** Reads straight from a libuv stream handle (no 'data' events); kOnExecute reports each read. */
    consume(handle: object): void;
    /** The buffer of the read being parsed (what follows an upgrade request's head). */
    getCurrentBuffer(): Buffer;
    unconsume(): void;
    /**
     * Milliseconds since llhttp's message-begin of the message being parsed (timed in C++); 0 between
     * messages. Unset (garbage) before the parser's first message.
     */
    duration(): number;
    close(): void;
    free(): void;
    remove(): void;
    [index: number]: unknown;
  }
  /** Method names by llhttp's method number, as kOnHeadersComplete reports them. */
  export const methods: readonly string[];
}
