/**
 * A bulk-copy batch written as COPY text while it is converted: each target row and each lineage
 * entry is serialised the moment the transform returns it, into off-heap buffers, instead of tens of
 * thousands of row, key and lineage objects living until the batch is written (and promoted by V8's
 * garbage collector meanwhile: the largest share of the copy's CPU before). Should COPY meet an
 * existing row, the text is parsed back into rows for upserts.
 */
import type { TargetValue } from './api.js';
import { CopyTextParser, CopyTextWriter, copyField } from './copy-text.js';
import { keyOf, type TargetTable } from './target.js';

/** Rows of one table with the same columns, as COPY text. */
export interface CopySegment {
  table: string;
  columns: string[];
  text: CopyTextWriter;
  /** Per line, the source row that produced it (an index into the batch's sourceRows). */
  sources: number[];
}

/** A segment's rows as values again (for the upsert fallback). */
export function segmentRows(segment: CopySegment): Record<string, string | null>[] {
  const parser = new CopyTextParser(segment.columns);
  const rows = parser.push(segment.text.bytes());
  parser.end();
  return rows;
}

export class CopyTextBatch {
  /** Per target table: its segments (nearly always one: a transform returns the same columns). */
  private readonly tables = new Map<string, CopySegment[]>();
  /** Lineage rows (source_table, source_key, targets as JSON), as COPY text. */
  readonly lineage = new CopyTextWriter();
  outputs = 0;
  /**
   * Each source row of the batch, in order: a row the new database refuses is named by its source
   * row's key, computed then — keeping a reference costs nothing per row, computing every key did.
   */
  readonly sourceRows: Record<string, string | null>[] = [];
  /** COPY text written so far, in UTF-16 units (bytes for ASCII): what bounds a batch's size. */
  chars = 0;
  /** The current source row's targets as JSON array elements. */
  private targets = '';
  private readonly prefixes = new Map<string, string>();

  /** Adds a target row; `target` set when lineage is kept (its key goes into the source row's entry). */
  add(table: string, row: Record<string, TargetValue>, target: TargetTable | undefined): void {
    const segment = this.segmentFor(table, row);
    const { columns } = segment;
    let line = copyField(row[columns[0] as string]);
    for (let i = 1; i < columns.length; i++) line += '\t' + copyField(row[columns[i] as string]);
    segment.text.line(line);
    segment.sources.push(this.sourceRows.length);
    this.chars += line.length + 1;
    this.outputs++;
    if (target) {
      // The same JSON as JSON.stringify([table, keyOf(target, row)]), built without the arrays.
      const { key } = target;
      let json = this.prefixOf(table);
      for (let i = 0; i < key.length; i++) {
        const value = row[key[i] as string];
        if (value === null || value === undefined) keyOf(target, row); // throws, naming the column
        json += (i ? ',' : '') + JSON.stringify(typeof value === 'string' ? value : String(value));
      }
      this.targets += (this.targets ? ',' : '') + json + ']]';
    }
  }

  /**
   * Ends the current source row; given its key, its lineage entry lists the targets added since the
   * last call (tables without lineage pass none).
   */
  endSource(sourceTable: string, sourceRow: Record<string, string | null>, sourceKey?: string): void {
    this.sourceRows.push(sourceRow);
    if (sourceKey === undefined) return;
    const line = `${copyField(sourceTable)}\t${copyField(sourceKey)}\t${copyField(`[${this.targets}]`)}`;
    this.lineage.line(line);
    this.chars += line.length + 1;
    this.targets = '';
  }

  segments(): CopySegment[] {
    return [...this.tables.values()].flat();
  }

  private segmentFor(table: string, row: Record<string, TargetValue>): CopySegment {
    let segments = this.tables.get(table);
    if (!segments) this.tables.set(table, (segments = []));
    const last = segments[segments.length - 1];
    if (last && hasColumns(row, last.columns)) return last;
    const columns = Object.keys(row);
    for (const segment of segments) if (hasColumns(row, segment.columns)) return segment;
    const segment: CopySegment = { table, columns, text: new CopyTextWriter(), sources: [] };
    segments.push(segment);
    return segment;
  }

  private prefixOf(table: string): string {
    let prefix = this.prefixes.get(table);
    if (prefix === undefined) this.prefixes.set(table, (prefix = `[${JSON.stringify(table)},[`));
    return prefix;
  }
}

/** True when the row has exactly these columns, in this order (no key array built per row). */
function hasColumns(row: Record<string, TargetValue>, columns: string[]): boolean {
  let i = 0;
  for (const k in row) if (columns[i++] !== k) return false;
  return i === columns.length;
}
