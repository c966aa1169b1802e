/**
 * What the change stream delivers: whole source transactions, in commit order. Column values keep
 * PostgreSQL's text form (NULL as null), so int8, numeric, timestamps with microseconds and every other
 * type reach the target exactly as the source stored them. A value that is `undefined` in an update's
 * new row is an unchanged TOASTed value that PostgreSQL did not send.
 */
import type { Lsn } from './lsn.js';

export type Row = Record<string, string | null | undefined>;

export type Change =
  | { op: 'insert'; table: string; new: Row }
  | {
      op: 'update';
      table: string;
      new: Row;
      /** old key, when the key changed or identity is FULL */ old: Row | null;
    }
  | { op: 'delete'; table: string; old: Row }
  | { op: 'truncate'; tables: string[] };

export interface SourceTransaction {
  xid: number;
  /** End of the commit record: the position to checkpoint and acknowledge. */
  commitEndLsn: Lsn;
  /** Unix milliseconds (with microsecond fraction); a number, not a Date: one object less per transaction. */
  commitTimeMs: number;
  changes: Change[];
  /** Logical messages in this transaction (Imago's fence markers among them). */
  messages: readonly { prefix: string; content: string; lsn: Lsn }[];
}
