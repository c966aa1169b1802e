/**
 * Changes to tables copied unchanged (identity conversions), collapsed per key within an apply group
 * and written as a few multi-row statements: the last change of each key wins, deletes go before
 * upserts (a unique value freed by a delete can be taken by an insert of the same group). Values an
 * update left out (unchanged TOAST) are merged from an earlier change of the group, or left out of the
 * upsert so the target keeps what it has.
 *
 * Statements of different tables are not ordered among themselves: identity tables must not have
 * foreign keys between them in the new schema unless the constraints are DEFERRABLE.
 */
import type pg from 'pg';
import type { Row } from '../capture/change.js';
import type { TargetValue } from './api.js';
import { quote, quoteQualified, upsert, type TargetTable } from './target.js';

type Pending = { op: 'upsert'; row: Row } | { op: 'delete'; key: string[] };

export class IdentityBatch {
  private readonly tables = new Map<string, { target: TargetTable; keys: Map<string, Pending> }>();

  get empty(): boolean {
    return this.tables.size === 0;
  }

  upsert(target: TargetTable, row: Row): void {
    const keys = this.keysOf(target);
    const id = keyString(target, row);
    const previous = keys.get(id);
    if (previous?.op === 'upsert' && Object.values(row).some((v) => v === undefined)) {
      const merged: Row = { ...row };
      for (const [k, v] of Object.entries(row)) if (v === undefined) merged[k] = previous.row[k];
      keys.set(id, { op: 'upsert', row: merged });
    } else {
      keys.set(id, { op: 'upsert', row });
    }
  }

  delete(target: TargetTable, keyRow: Row): void {
    const key = target.key.map((c) => String(keyRow[c]));
    this.keysOf(target).set(key.join('\0'), { op: 'delete', key });
  }

  async flush(client: pg.Client): Promise<void> {
    for (const { target, keys } of this.tables.values()) {
      const deletes: string[][] = [];
      const upserts: Record<string, TargetValue>[] = [];
      for (const pending of keys.values()) {
        if (pending.op === 'delete') deletes.push(pending.key);
        else upserts.push(defined(pending.row));
      }
      await deleteKeys(client, target, deletes);
      await upsert(client, target, upserts);
    }
    this.tables.clear();
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

function keyString(target: TargetTable, row: Row): string {
  return target.key.map((c) => String(row[c])).join('\0');
}

function defined(row: Row): Record<string, TargetValue> {
  const out: Record<string, TargetValue> = {};
  for (const [k, v] of Object.entries(row)) if (v !== undefined) out[k] = v;
  return out;
}

async function deleteKeys(client: pg.Client, target: TargetTable, keys: string[][]): Promise<void> {
  const perStatement = Math.floor(60000 / target.key.length);
  for (let start = 0; start < keys.length; start += perStatement) {
    const params: string[] = [];
    const tuples = keys
      .slice(start, start + perStatement)
      .map((key) => `(${key.map((v) => `$${params.push(v)}`).join(', ')})`);
    await client.query(
      `DELETE FROM ${quoteQualified(target.name)} WHERE (${target.key.map(quote).join(', ')}) IN (${tuples.join(', ')})`,
      params,
    );
  }
}
