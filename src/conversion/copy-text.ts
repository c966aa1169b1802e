/**
 * PostgreSQL's COPY text format (tab-separated, `\N` for NULL, backslash escapes): parsed into rows of
 * text values, and written from values. A raw newline always ends a row (newlines in data are
 * escaped), so rows can be cut out of chunks without knowing the columns' types.
 */
import type { TargetValue } from './api.js';

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
  private rest = '';
  private readonly decoder = new TextDecoder('utf-8');

  constructor(private readonly columns: string[]) {}

  /** Rows completed by this chunk. */
  push(chunk: Uint8Array): Record<string, string | null>[] {
    const decoded = this.decoder.decode(chunk, { stream: true });
    // No row ends here (a value longer than the chunk): joined lazily, not split and copied again
    // with every chunk, which was quadratic in a very long row.
    if (!decoded.includes('\n')) {
      this.rest += decoded;
      return [];
    }
    const text = this.rest + decoded;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    return lines.map((line) => this.row(line));
  }

  /** Throws if the stream ended in the middle of a row. */
  end(): void {
    this.rest += this.decoder.decode();
    if (this.rest !== '') throw new Error('COPY stream ended in the middle of a row');
  }

  private row(line: string): Record<string, string | null> {
    const fields = line.split('\t');
    if (fields.length !== this.columns.length) {
      throw new Error(`COPY row has ${fields.length} fields, expected ${this.columns.length}`);
    }
    const row: Record<string, string | null> = {};
    this.columns.forEach((column, i) => {
      row[column] = unescape(fields[i] as string);
    });
    return row;
  }
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
