/**
 * Parses PostgreSQL's COPY text format (tab-separated, `\N` for NULL, backslash escapes) into rows of
 * text values. A raw newline always ends a row (newlines in data are escaped), so rows can be cut
 * out of chunks without knowing the columns' types.
 */
const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

export class CopyTextParser {
  private rest = '';
  private readonly decoder = new TextDecoder('utf-8');

  constructor(private readonly columns: string[]) {}

  /** Rows completed by this chunk. */
  push(chunk: Uint8Array): Record<string, string | null>[] {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
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
