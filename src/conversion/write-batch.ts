/**
 * Target writes of an apply group, collapsed per target row and written as a few multi-row
 * statements: the last change of each key wins, deletes go before upserts (a unique value freed by a
 * delete can be taken by an insert of the same group). Rows new to the target go in with COPY. Values
 * an update left out (unchanged TOAST) are merged from an earlier change of the group, or left out of
 * the upsert so the target keeps what it has.
 *
 * Statements of different keys and tables are not ordered among themselves: the applier falls back to
 * exact, change-by-change writes for a group where that matters (a unique violation), and target
 * tables must not reference each other with non-deferrable foreign keys.
 */
import type pg from 'pg';
import type { Row } from '../capture/change.js';
import type { TargetValue } from './api.js';
import {
  bySignature,
  conflictClause,
  literal,
  quote,
  quoteQualified,
  upsert,
  type TargetTable,
} from './target.js';
import { copyRowsIn } from './copy-in.js';

/** `fresh`: inserted within this group and unknown to the target before it: COPY can write it. */
type Pending = { op: 'upsert'; row: Row; fresh: boolean } | { op: 'delete'; key: string[] };

/** Fewer fresh rows than this go with the upserts: starting a COPY costs more than it saves. */
const COPY_FROM = 64;

export class WriteBatch {
  /**
   * Replaced, never cleared: the batch lives as long as the applier, so its map is in the old
   * generation, and Map#clear leaves the old table linked to its successor with its entries in
   * place — each group's rows would stay reachable for the scavenger until the next full GC.
   */
  private tables = new Map<string, { target: TargetTable; keys: Map<string, Pending> }>();

  /** Rows that are new to the target go in with COPY; turned off to retry a group after a conflict. */
  copyFresh = true;

  upsert(target: TargetTable, row: Row, inserted: boolean): void {
    const keys = this.keysOf(target);
    const id = keyString(target, row);
    const previous = keys.get(id);
    const fresh = previous === undefined ? inserted : previous.op === 'upsert' && previous.fresh;
    if (previous?.op === 'upsert' && hasUndefined(row)) {
      const merged: Row = { ...row };
      for (const k in row) if (row[k] === undefined) merged[k] = previous.row[k];
      keys.set(id, { op: 'upsert', row: merged, fresh });
    } else {
      keys.set(id, { op: 'upsert', row, fresh });
    }
  }

  /** A transform's output row (values of any type, kept as PostgreSQL text). */
  upsertValues(target: TargetTable, values: Record<string, TargetValue>): void {
    const row: Row = {};
    for (const [k, v] of Object.entries(values))
      row[k] = v === null ? null : typeof v === 'string' ? v : String(v);
    this.upsert(target, row, false);
  }

  deleteKey(target: TargetTable, key: string[]): void {
    this.keysOf(target).set(key.join('\0'), { op: 'delete', key });
  }

  /** True when rows of `table` wait to be written (a lookup into it must account for them). */
  touches(table: string): boolean {
    return (this.tables.get(table)?.keys.size ?? 0) > 0;
  }

  /**
   * A lookup answered from the pending writes when that is exact: a complete pending row whose
   * values equal `where` as text. 'flush' when the pending writes make the answer uncertain (a
   * partial row that might match); undefined when no pending row matches (then ask the database,
   * with `pendingKey` to check its answer).
   */
  findPending(table: string, where: Record<string, TargetValue>): Row | 'flush' | undefined {
    const entry = this.tables.get(table);
    if (!entry) return undefined;
    const wanted = Object.entries(where).map(([c, v]) => [c, v === null ? null : String(v)] as const);
    for (const pending of entry.keys.values()) {
      if (pending.op !== 'upsert') continue;
      const row = pending.row;
      const complete =
        entry.target.columns.size === Object.keys(row).length && !Object.values(row).includes(undefined);
      if (wanted.every(([c, v]) => row[c] === v)) return complete ? row : 'flush';
      if (!complete && wanted.some(([c]) => row[c] === undefined)) return 'flush';
    }
    return undefined;
  }

  /** True when the database's version of this row is about to change (upsert or delete pending). */
  pendingKey(table: string, row: Row): boolean {
    const entry = this.tables.get(table);
    return entry !== undefined && entry.keys.has(keyString(entry.target, row));
  }

  clear(): void {
    this.tables = new Map();
  }

  delete(target: TargetTable, keyRow: Row): void {
    const key = target.key.map((c) => String(keyRow[c]));
    this.keysOf(target).set(key.join('\0'), { op: 'delete', key });
  }

  /** Pending changes that fit one small SQL script, or undefined (too many: use `flush`). */
  script(maxRows = 200): string | undefined {
    let count = 0;
    for (const { keys } of this.tables.values()) count += keys.size;
    if (count > maxRows) return undefined;
    const statements: string[] = [];
    for (const { target, keys } of this.tables.values()) {
      const deletes: string[][] = [];
      const upserts: Record<string, TargetValue>[] = [];
      for (const pending of keys.values()) {
        if (pending.op === 'delete') deletes.push(pending.key);
        else upserts.push(defined(pending.row));
      }
      if (deletes.length > 0) {
        const tuples = deletes.map((key) => `(${key.map(literal).join(', ')})`);
        statements.push(
          `DELETE FROM ${quoteQualified(target.name)} WHERE (${target.key.map(quote).join(', ')}) IN (${tuples.join(', ')})`,
        );
      }
      for (const [columns, rows] of bySignature(upserts)) {
        const values = rows.map((row) => `(${columns.map((c) => literal(row[c] ?? null)).join(', ')})`);
        statements.push(
          `INSERT INTO ${quoteQualified(target.name)} (${columns.map(quote).join(', ')}) VALUES ${values.join(', ')} ${conflictClause(target, columns)}`,
        );
      }
    }
    this.tables = new Map();
    return statements.join(';\n');
  }

  async flush(client: pg.Client): Promise<void> {
    for (const { target, keys } of this.tables.values()) {
      const deletes: string[][] = [];
      const upserts: Record<string, TargetValue>[] = [];
      const inserts: Record<string, TargetValue>[] = [];
      for (const pending of keys.values()) {
        if (pending.op === 'delete') deletes.push(pending.key);
        else if (pending.fresh && this.copyFresh) inserts.push(defined(pending.row));
        else upserts.push(defined(pending.row));
      }
      await deleteKeys(client, target, deletes);
      // Exactly-once apply means an insert never meets an existing row, unless the target was written
      // by someone else: then COPY fails with unique_violation and the group is retried with upserts.
      if (inserts.length >= COPY_FROM) {
        for (const [columns, rows] of bySignature(inserts))
          await copyRowsIn(client, target.name, columns, rows);
      } else {
        upserts.push(...inserts); // a few rows: one statement costs less than starting a COPY
      }
      await upsert(client, target, upserts);
    }
    this.tables = new Map();
  }

  private keysOf(target: TargetTable): Map<string, Pending> {
    let entry = this.tables.get(target.name);
    if (!entry) {
      entry = { target, keys: new Map() };
      this.tables.set(target.name, entry);
    }
    return entry.keys;
  }
}

/** A target row's primary key as one string (the batch's map key). */
export function keyString(target: TargetTable, row: Row): string {
  const key = target.key;
  // A single-column key (nearly all) is its value itself: no array and no joined copy per change.
  if (key.length === 1) return String(row[key[0] as string]);
  return key.map((c) => String(row[c])).join('\0');
}

/** The row without its unchanged-TOAST (undefined) values; the row itself when it has none (no copy). */
function defined(row: Row): Record<string, TargetValue> {
  if (!hasUndefined(row)) return row as Record<string, TargetValue>;
  const out: Record<string, TargetValue> = {};
  for (const k in row) if (row[k] !== undefined) out[k] = row[k] as TargetValue;
  return out;
}

function hasUndefined(row: Row): boolean {
  for (const k in row) if (row[k] === undefined) return true;
  return false;
}

async function deleteKeys(client: pg.Client, target: TargetTable, keys: string[][]): Promise<void> {
  if (keys.length === 0) return;
  const types = target.key.map((c) => target.types.get(c) ?? 'text');
  const using = target.key.map((c, i) => `t.${quote(c)} = d.k${i}`).join(' AND ');
  await client.query(
    `DELETE FROM ${quoteQualified(target.name)} t
      USING unnest(${types.map((type, i) => `$${i + 1}::${type}[]`).join(', ')}) AS d(${target.key.map((_, i) => `k${i}`).join(', ')})
      WHERE ${using}`,
    target.key.map((_, i) => keys.map((key) => key[i])),
  );
}
