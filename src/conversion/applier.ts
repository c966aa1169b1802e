/**
 * Applies source transactions to the new database in commit order. Each source transaction becomes
 * one target transaction that also advances the checkpoint to the source commit LSN, so the new
 * database always holds a transaction-consistent prefix of the old one's history, and a restart
 * skips exactly what the checkpoint covers. A transform that throws rolls its whole transaction back.
 */
import type pg from 'pg';
import type { Change, Row, SourceTransaction } from '../capture/change.js';
import type { Lsn } from '../capture/lsn.js';
import type { TargetRow, TransformContext } from './api.js';
import { deleteLineage, readLineage, takeTableLineage, writeLineage, type Targets } from './lineage.js';
import type { RowConverter } from './row-converter.js';
import { writeCheckpoint } from './state.js';
import { deleteByKey, keyOf, quoteQualified, toRows, upsert, type TargetCatalog } from './target.js';
import { lookupIn } from './lookup.js';

export class Applier {
  private readonly ctx: TransformContext;

  constructor(
    private readonly client: pg.Client,
    private readonly converter: RowConverter,
    private readonly catalog: TargetCatalog,
    private readonly stream: string,
  ) {
    this.ctx = { lookup: (table, where) => lookupIn(client, table, where) };
  }

  async apply(txn: SourceTransaction): Promise<void> {
    await this.client.query('BEGIN');
    try {
      for (const change of txn.changes) await this.applyChange(change);
      await writeCheckpoint(this.client, this.stream, txn.commitEndLsn);
      await this.client.query('COMMIT');
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  /** Records a position without changes (e.g. a transaction that only carried a fence marker). */
  async checkpoint(lsn: Lsn): Promise<void> {
    await writeCheckpoint(this.client, this.stream, lsn);
  }

  private async applyChange(change: Change): Promise<void> {
    if (change.op === 'truncate') {
      for (const table of change.tables.filter((t) => this.converter.has(t))) await this.truncate(table);
      return;
    }
    if (!this.converter.has(change.table)) return;
    const table = change.table;
    if (change.op === 'delete') {
      await this.replace(table, change.old, undefined);
      return;
    }
    if (change.op === 'update' && change.old) {
      const oldKey = this.converter.keyOf(table, change.old);
      // A changed key: the row under the old key is gone.
      if (oldKey !== this.converter.keyOf(table, change.new))
        await this.replace(table, change.old, undefined);
    }
    await this.replace(table, change.new, change.new);
  }

  /** Makes the target hold exactly what `row` converts to (nothing when `row` is undefined). */
  private async replace(table: string, keyRow: Row, row: Row | undefined): Promise<void> {
    const identity = this.converter.identityTarget(table);
    const outputs = row ? await this.converter.convert(table, row, this.ctx) : [];
    if (identity !== undefined) {
      if (row) await this.write(outputs);
      else await deleteByKey(this.client, await this.catalog.table(identity), this.keyValues(table, keyRow));
      return;
    }
    const sourceKey = this.converter.keyOf(table, keyRow);
    const previous = await readLineage(this.client, table, sourceKey);
    const produced = await this.write(outputs);
    const kept = new Set(produced.map(([t, k]) => `${t}\0${k.join('\0')}`));
    // Delete in reverse order of production, so that rows referring to others go first.
    for (const [t, key] of [...previous].reverse()) {
      if (!kept.has(`${t}\0${key.join('\0')}`))
        await deleteByKey(this.client, await this.catalog.table(t), key);
    }
    if (row) await writeLineage(this.client, [{ sourceTable: table, sourceKey, targets: produced }]);
    else await deleteLineage(this.client, table, sourceKey);
  }

  private async write(outputs: TargetRow[]): Promise<Targets> {
    const produced: Targets = [];
    for (const [name, rows] of toRows(outputs)) {
      const target = await this.catalog.table(name);
      await upsert(this.client, target, rows);
      for (const row of rows) produced.push([name, keyOf(target, row)]);
    }
    return produced;
  }

  private async truncate(table: string): Promise<void> {
    const identity = this.converter.identityTarget(table);
    if (identity !== undefined) {
      await this.client.query(`DELETE FROM ${quoteQualified(identity)}`);
      return;
    }
    for (const [t, key] of (await takeTableLineage(this.client, table)).reverse()) {
      await deleteByKey(this.client, await this.catalog.table(t), key);
    }
  }

  private keyValues(table: string, row: Row): string[] {
    return this.converter.source(table).key.map((c) => String(row[c]));
  }
}
