/**
 * Splits a PostgreSQL backend byte stream into protocol messages and takes the CopyData ones
 * ('d') for itself, handing their payload over as a range of the received chunk: no Buffer, event
 * or message object per message. Everything else (CopyBothResponse, errors, notices, CommandComplete,
 * ReadyForQuery) is forwarded byte for byte, whole messages only, to the general-purpose parser the
 * connection already had, which keeps handling the query's outcome.
 *
 * A replication stream is hundreds of thousands of CopyData messages per second; going through the
 * general-purpose parser cost a Buffer slice, a message object and two event emissions each.
 */

/** Type byte plus the 4-byte length (which counts itself but not the type byte). */
const HEADER = 5;
const COPY_DATA = 0x64; // 'd'

export class CopyDataFramer {
  /** The start of an incomplete message, and what arrived after it. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** The incomplete message's full size, once its header has arrived (0 before). */
  private needed = 0;

  constructor(
    /** A CopyData payload: bytes `start` to `end` of `chunk`, valid during the call only. */
    private readonly onCopyData: (chunk: Buffer, start: number, end: number) => void,
    /** Whole non-CopyData messages, in the order received. */
    private readonly forward: (bytes: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.partialBytes > 0) {
      this.partial.push(chunk);
      this.partialBytes += chunk.length;
      if (this.needed === 0 && this.partialBytes >= HEADER) {
        const head = Buffer.concat(this.partial, this.partialBytes);
        this.partial = [head];
        this.needed = 1 + head.readInt32BE(1);
      }
      // A large message (a big TOASTed value) is joined once, when complete, not chunk by chunk.
      if (this.needed === 0 || this.partialBytes < this.needed) return;
      buf = Buffer.concat(this.partial, this.partialBytes);
      this.partial = [];
      this.partialBytes = 0;
      this.needed = 0;
    }
    const n = buf.length;
    let pos = 0;
    let forwardFrom = -1;
    while (pos + HEADER <= n) {
      const end = pos + 1 + buf.readInt32BE(pos + 1);
      if (end > n) break;
      if (buf[pos] === COPY_DATA) {
        if (forwardFrom >= 0) {
          this.forward(buf.subarray(forwardFrom, pos));
          forwardFrom = -1;
        }
        this.onCopyData(buf, pos + HEADER, end);
      } else if (forwardFrom < 0) {
        forwardFrom = pos;
      }
      pos = end;
    }
    if (forwardFrom >= 0) this.forward(buf.subarray(forwardFrom, pos));
    if (pos < n) {
      const rest = buf.subarray(pos);
      this.partial = [rest];
      this.partialBytes = rest.length;
      this.needed = rest.length >= HEADER ? 1 + rest.readInt32BE(1) : 0;
    }
  }
}
