/**
 * A decoder for PostgreSQL's pgoutput logical replication messages (protocol version 1), producing
 * exactly what the change stream needs, straight into its sink: changes as the stream hands them
 * over, LSNs as bigint, column values in PostgreSQL's text form (NULL as null, an unchanged TOASTed
 * value as undefined). It replaces the general-purpose parser of
 * pg-logical-replication on the hot path: at hundreds of thousands of messages per second, its
 * per-value TextDecoder calls and LSN strings cost more than the rest of the pipeline.
 *
 * Message formats: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */
import type { Lsn } from './lsn.js';
import type { Change, Row } from './change.js';
import { tableKey } from '../sql.js';

export interface Relation {
  /** The table's canonical spelling (src/sql.ts tableKey): `name` in the public schema, else `schema.name`. */
  table: string;
  columns: string[];
}

/**
 * Where decoded messages go, as they are decoded: the changes are built once, in the shape the
 * stream hands over, with no intermediate message object per change.
 */
export interface PgoutputSink {
  begin(xid: number): void;
  change(change: Change): void;
  /** A logical message (`pg_logical_emit_message`). */
  message(transactional: boolean, lsn: Lsn, prefix: string, content: string): void;
  /** `commitTimeMs`: Unix milliseconds (with microsecond fraction). */
  commit(commitEndLsn: Lsn, commitTimeMs: number): void;
}

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
export const PG_EPOCH_US = 946_684_800_000_000n;
const PG_EPOCH_MS = 946_684_800_000;

/**
 * A PostgreSQL timestamp (microseconds since 2000) at `pos` as Unix milliseconds, as a double:
 * microseconds since 2000 stay exact far past any real date, and no bigint is made per message.
 */
export function pgTimestampMs(buf: Buffer, pos: number): number {
  return (buf.readUInt32BE(pos) * 4294967296 + buf.readUInt32BE(pos + 4)) / 1000 + PG_EPOCH_MS;
}

/**
 * Node's own UTF-8 slice, without Buffer#toString's encoding dispatch: a measurable share of the
 * decoder at a million values a second. (Undocumented; Buffer#toString where it is missing.)
 */
const utf8Slice: (this: Buffer, start: number, end: number) => string =
  (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string })
    .utf8Slice ??
  function (this: Buffer, start: number, end: number) {
    return this.toString('utf8', start, end);
  };

export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** The commit time of the newest transaction begun (Unix ms, server clock); NaN before any. */
  commitTimeMs = Number.NaN;

  constructor(private readonly sink: PgoutputSink) {}

  /** Decodes the message in bytes `start` to `end` of `buf` (read during the call only). */
  decode(buf: Buffer, start: number, end: number): void {
    this.buf = buf;
    this.pos = start + 1;
    const sink = this.sink;
    switch (buf[start]) {
      case 0x42 /* B */: {
        // Final LSN, commit time (both again in the commit message); the time is kept now, so that a
        // stream far behind is known as such before a large transaction's commit arrives.
        this.commitTimeMs = pgTimestampMs(buf, this.pos + 8);
        this.pos += 16;
        sink.begin(this.int32());
        return;
      }
      case 0x43 /* C */: {
        this.pos += 1 + 8; // flags, commit LSN
        const commitEndLsn = this.uint64();
        const commitTimeMs = pgTimestampMs(buf, this.pos);
        this.pos += 8;
        sink.commit(commitEndLsn, commitTimeMs);
        return;
      }
      case 0x52 /* R */:
        this.relation();
        return;
      case 0x49 /* I */: {
        const relation = this.relationOf(this.int32());
        this.pos += 1; // 'N'
        sink.change({ op: 'insert', table: relation.table, new: this.tuple(relation, null) });
        return;
      }
      case 0x55 /* U */: {
        const relation = this.relationOf(this.int32());
        const kind = buf[this.pos++];
        let old: Row | null = null;
        if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
          old = this.tuple(relation, null);
          this.pos += 1; // 'N'
        }
        // Unchanged TOASTed values come from the whole old row when the table sends it (REPLICA
        // IDENTITY FULL, 'O'); a key-only old row ('K') has no other values to offer.
        const row = this.tuple(relation, kind === 0x4f ? old : null);
        sink.change({ op: 'update', table: relation.table, new: row, old });
        return;
      }
      case 0x44 /* D */: {
        const relation = this.relationOf(this.int32());
        this.pos += 1; // 'K' or 'O'
        sink.change({ op: 'delete', table: relation.table, old: this.tuple(relation, null) });
        return;
      }
      case 0x54 /* T */: {
        const count = this.int32();
        this.pos += 1; // options
        const tables: string[] = [];
        for (let i = 0; i < count; i++) tables.push(this.relationOf(this.int32()).table);
        sink.change({ op: 'truncate', tables });
        return;
      }
      case 0x4d /* M */: {
        const transactional = ((buf[this.pos++] as number) & 1) === 1;
        const lsn = this.uint64();
        const prefix = this.string();
        const length = this.int32();
        if (this.pos + length > end) throw new Error('pgoutput: logical message longer than its frame');
        sink.message(transactional, lsn, prefix, buf.toString('utf8', this.pos, this.pos + length));
        return;
      }
      default:
        return; // type (Y) and origin (O) messages carry nothing to apply
    }
  }

  private relation(): void {
    const oid = this.int32();
    const schema = this.string();
    const name = this.string();
    this.pos += 1; // replica identity setting
    const count = this.int16();
    const columns: string[] = [];
    for (let i = 0; i < count; i++) {
      this.pos += 1; // flags (part of the key)
      columns.push(this.string());
      this.pos += 8; // type oid, type modifier
    }
    this.relations.set(oid, { table: tableKey({ schema, name }), columns });
  }

  private relationOf(oid: number): Relation {
    const relation = this.relations.get(oid);
    if (!relation) throw new Error(`pgoutput: change for relation ${oid} before its relation message`);
    return relation;
  }

  private tuple(relation: Relation, unchangedFrom: Row | null): Row {
    const count = this.int16();
    const row: Row = {};
    const { columns } = relation;
    for (let i = 0; i < count; i++) {
      const name = columns[i] as string;
      const kind = this.buf[this.pos++];
      if (kind === 0x74 /* t */) {
        const length = this.int32();
        row[name] = utf8Slice.call(this.buf, this.pos, this.pos + length);
        this.pos += length;
      } else if (kind === 0x6e /* n */) {
        row[name] = null;
      } else if (kind === 0x75 /* u */) {
        row[name] = unchangedFrom ? unchangedFrom[name] : undefined;
      } else {
        throw new Error(
          `pgoutput: unexpected column kind ${String.fromCharCode(kind ?? 0)} (binary mode is not used)`,
        );
      }
    }
    return row;
  }

  private int16(): number {
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  private int32(): number {
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private uint64(): bigint {
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  private string(): string {
    const end = this.buf.indexOf(0, this.pos);
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
}
