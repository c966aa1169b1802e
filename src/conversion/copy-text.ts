/**
 * PostgreSQL's COPY text format (tab-separated, `\N` for NULL, backslash escapes): parsed into rows of
 * text values, and written from values. A raw newline always ends a row (newlines in data are
 * escaped), so rows can be cut out of chunks without knowing the columns' types.
 */
import type { TargetValue } from './api.js';
import { utf8Slice } from '../utf8.js';

const SPECIAL = /[\\\n\r\t]/;

/** One value in COPY's text form. */
export function copyField(value: TargetValue | undefined): string {
  if (value === null || value === undefined) return '\\N';
  if (typeof value === 'number') return String(value); // digits, '.', '-', 'e', 'NaN', 'Infinity': nothing to escape
  const text = typeof value === 'string' ? value : String(value);
  return SPECIAL.test(text)
    ? text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')
    : text;
}

/**
 * COPY text lines written straight into a growing Buffer: off V8's heap, so a batch of thousands of
 * lines is not thousands of strings the garbage collector must keep alive until the batch is sent.
 */
export class CopyTextWriter {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private length = 0;
  /** Lines not yet in the buffer: one write per few kilobytes costs less than one per line. */
  private pending = '';

  /** Appends one line (its fields already COPY-escaped and tab-separated), adding the newline. */
  line(text: string): void {
    this.pending += text + '\n';
    if (this.pending.length >= PENDING_CHARS) this.flush();
  }

  bytes(): Buffer {
    this.flush();
    return this.buf.subarray(0, this.length);
  }

  private flush(): void {
    const text = this.pending;
    if (text === '') return;
    this.pending = '';
    // UTF-8 takes at most 3 bytes per UTF-16 unit; grow by doubling.
    const most = text.length * 3;
    if (this.length + most > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + most));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    this.length += this.buf.write(text, this.length, 'utf8');
  }
}

const PENDING_CHARS = 8192;

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

export class CopyTextParser {
  /** The bytes of an incomplete last line, until its newline arrives (one very long row: many chunks). */
  private rest: Buffer[] = [];

  constructor(private readonly columns: string[]) {}

  /**
   * Rows completed by this chunk. Only whole lines are decoded: a newline byte is never part of a
   * multi-byte UTF-8 sequence, so the text is cut there without a streaming decoder, and the lines
   * are read in place with indexOf, with no array of lines or of fields per row.
   */
  push(chunk: Uint8Array): Record<string, string | null>[] {
    const rows: Record<string, string | null>[] = [];
    let bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const last = bytes.lastIndexOf(0x0a);
    if (last < 0) {
      // Kept, not joined: a row longer than many chunks is joined once, when its newline arrives.
      this.rest.push(Buffer.from(bytes));
      return rows;
    }
    let cut = last + 1;
    if (this.rest.length > 0) {
      const held = this.rest.reduce((n, b) => n + b.length, 0);
      bytes = Buffer.concat([...this.rest, bytes]);
      cut += held;
      this.rest = [];
    }
    if (cut < bytes.length) this.rest.push(Buffer.from(bytes.subarray(cut)));
    const text = utf8Slice.call(bytes, 0, cut);
    // The next backslash, found once and passed over: a line without one has no escape and no NULL.
    let backslash = text.indexOf('\\');
    for (let start = 0; start < text.length;) {
      const end = text.indexOf('\n', start);
      if (backslash >= 0 && backslash < start) backslash = text.indexOf('\\', start);
      rows.push(this.row(text, start, end, backslash >= 0 && backslash < end));
      start = end + 1;
    }
    return rows;
  }

  /** Throws if the stream ended in the middle of a row. */
  end(): void {
    if (this.rest.length > 0) throw new Error('COPY stream ended in the middle of a row');
  }

  /** The row in `text` from `start` to `end` (its newline); `escaped`: the line has a backslash. */
  private row(text: string, start: number, end: number, escaped: boolean): Record<string, string | null> {
    const { columns } = this;
    const row: Record<string, string | null> = {};
    let from = start;
    for (let i = 0; i < columns.length; i++) {
      let to = text.indexOf('\t', from);
      if (to < 0 || to > end) to = end;
      if ((to === end) !== (i === columns.length - 1)) {
        throw new Error(`COPY row has ${fieldCount(text, start, end)} fields, expected ${columns.length}`);
      }
      const field = text.slice(from, to);
      row[columns[i] as string] = escaped ? unescape(field) : field;
      from = to + 1;
    }
    return row;
  }
}

function fieldCount(text: string, start: number, end: number): number {
  return text.slice(start, end).split('\t').length;
}

function unescape(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  return field.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, seq: string) => {
    if (seq[0] === 'x') return String.fromCharCode(parseInt(seq.slice(1), 16));
    if (/^[0-7]/.test(seq)) return String.fromCharCode(parseInt(seq, 8));
    return ESCAPES[seq] ?? seq;
  });
}
