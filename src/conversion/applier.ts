/**
 * Applies source transactions to the new database in commit order. A group of whole source
 * transactions becomes one target transaction that also advances the checkpoint to the last one's
 * commit LSN, so the new database always holds a transaction-consistent prefix of the old one's
 * history, and a restart skips exactly what the checkpoint covers. A transform that throws rolls the
 * whole group back.
 *
 * Fast mode (the default) collapses the group's target writes per row (write-batch.ts) and reads and
 * writes its lineage in bulk; a lookup flushes pending writes to the table it reads first. If that
 * reordering meets a unique violation, the group is applied again in exact mode: change by change,
 * each write immediately, as the source ran them.
 */
import type pg from 'pg';
import type { Change, Row, SourceTransaction } from '../capture/change.js';
import type { TargetRow, TargetValue, TransformContext } from './api.js';
import {
  GroupLineage,
  deleteLineage,
  readLineage,
  takeTableLineage,
  writeLineage,
  type Targets,
} from './lineage.js';
import type { KeyedTarget, RowConverter } from './row-converter.js';
import { checkpointSql, writeCheckpointAndCommit, type AppliedFigures } from './state.js';
import type { Lsn } from '../capture/lsn.js';
import {
  deleteByKey,
  keyOf,
  quoteQualified,
  toRows,
  upsert,
  type TargetCatalog,
  type TargetTable,
} from './target.js';
import { WriteBatch, keyString } from './write-batch.js';
import { RefusedRowError, constraintDefinition, isRefusedRow, type PgViolation } from './refused-row.js';
import { formatLsn } from '../capture/lsn.js';
import { KeyedLineage, canonicalKey } from './keyed-lineage.js';
import { lookupIn } from './lookup.js';
import { tableKey } from '../sql.js';

/** The row with its primary key's values replaced (by their canonical spelling). */
function withKey(
  target: TargetTable,
  row: Record<string, TargetValue>,
  key: string[],
): Record<string, TargetValue> {
  const copy = { ...row };
  target.key.forEach((c, i) => (copy[c] = key[i] as string));
  return copy;
}

/** The group's transactions and changes, counted with the checkpoint. */
function appliedFigures(txns: SourceTransaction[]): AppliedFigures {
  let changes = 0;
  for (let t = 0; t < txns.length; t++) changes += (txns[t] as SourceTransaction).changes.length;
  return { transactions: txns.length, changes };
}

/** Groups up to this many changes may go as one simple-protocol script. */
const SCRIPT_MAX_ROWS = 200;

export class Applier {
  private readonly ctx: TransformContext;
  /** Lineage of tables whose target rows carry the source key (sourceKeyIn): read, never written. */
  private readonly keyed: KeyedLineage;

  constructor(
    private readonly client: pg.Client,
    private readonly converter: RowConverter,
    private readonly catalog: TargetCatalog,
    private readonly stream: string,
  ) {
    this.ctx = { lookup: (table, where) => lookupIn(client, table, where) };
    this.keyed = new KeyedLineage(client, catalog);
  }

  private readonly batch = new WriteBatch();

  async apply(txns: SourceTransaction[]): Promise<void> {
    try {
      await this.applyOnce(txns, true);
    } catch (err) {
      if (!isRefusedRow(err)) throw err;
      // A row the group writes met an existing one (a row new to us that the target already had, a
      // unique value moved between rows, rows written in another order than their foreign keys
      // need): apply the group again, exactly as the source ran it. A row the new database refuses
      // whatever the order fails there too, named by the change that produced it.
      this.batch.copyFresh = false;
      try {
        await this.applyOnce(txns, false);
      } finally {
        this.batch.copyFresh = true;
      }
    }
  }

  private async applyOnce(txns: SourceTransaction[], fast: boolean): Promise<void> {
    const last = txns[txns.length - 1];
    if (!last) return;
    const applied = appliedFigures(txns);
    if (fast && (await this.applyAsScript(txns, last.commitEndLsn, applied))) return;
    this.batch.clear();
    try {
      await this.client.query('BEGIN');
      const lineage = fast ? await this.prefetchLineage(txns) : undefined;
      // Indexed loops: in an async function a for…of iterator lives across awaits, so it and its
      // result objects are allocated per transaction and per change (a fifth of the stream's garbage).
      for (let t = 0; t < txns.length; t++) {
        const changes = (txns[t] as SourceTransaction).changes;
        for (let c = 0; c < changes.length; c++) {
          const change = changes[c] as Change;
          if (!fast) {
            // Exact: each change written before the next, as the source ran them.
            try {
              await this.applyChange(change);
              await this.batch.flush(this.client);
            } catch (err) {
              throw isRefusedRow(err) ? await this.refused(err, txns[t] as SourceTransaction, change) : err;
            }
            continue;
          }
          // Most changes are to identity tables already described: no await, no round trip.
          if (this.batchKnownIdentity(change)) continue;
          if (lineage && change.op !== 'truncate') await this.applyBatched(change, lineage);
          else await this.applyChange(change, lineage);
        }
      }
      await this.batch.flush(this.client);
      await lineage?.flush();
      await writeCheckpointAndCommit(this.client, this.stream, last.commitEndLsn, applied);
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => {});
      this.catalog.forget();
      throw err;
    }
  }

  /** A change whose row the new database refuses, as the user's error (the group is rolled back). */
  private async refused(err: PgViolation, txn: SourceTransaction, change: Change): Promise<RefusedRowError> {
    await this.client.query('ROLLBACK').catch(() => {});
    const row = change.op === 'truncate' ? undefined : change.op === 'delete' ? change.old : change.new;
    return new RefusedRowError(err, {
      during: 'the change stream',
      sourceTable: change.op === 'truncate' ? change.tables.join(', ') : change.table,
      ...(row && change.op !== 'truncate' ? { sourceKey: this.converter.keyOf(change.table, row) } : {}),
      at: `the ${change.op} in the source transaction that committed at ${formatLsn(txn.commitEndLsn)}`,
      definition: await constraintDefinition(this.client, err),
    });
  }

  /** The lineage of every transform-table row the group changes, in one query. */
  private async prefetchLineage(txns: SourceTransaction[]): Promise<GroupLineage> {
    const lineage = new GroupLineage(this.client);
    const keys: { sourceTable: string; sourceKey: string }[] = [];
    const keyed = new Map<string, Set<string>>();
    for (const txn of txns) {
      for (const change of txn.changes) {
        if (change.op === 'truncate' || !this.converter.has(change.table)) continue;
        if (this.converter.identityTarget(change.table) !== undefined) continue;
        const derived = this.converter.keyedBy(change.table) !== undefined;
        for (const row of change.op === 'delete'
          ? [change.old]
          : [change.new, change.op === 'update' ? change.old : null]) {
          if (!row) continue;
          const sourceKey = this.converter.keyOf(change.table, row);
          if (!derived) keys.push({ sourceTable: change.table, sourceKey });
          else {
            let set = keyed.get(change.table);
            if (!set) keyed.set(change.table, (set = new Set()));
            set.add(sourceKey);
          }
        }
      }
    }
    await lineage.prefetch(keys);
    for (const [table, sourceKeys] of keyed) {
      const spec = this.converter.keyedBy(table) as KeyedTarget[];
      lineage.derive(table, await this.keyed.read(spec, [...sourceKeys]));
    }
    return lineage;
  }

  /** A transform table's change, written into the batch with its lineage kept in memory. */
  private async applyBatched(
    change: Exclude<Change, { op: 'truncate' }>,
    lineage: GroupLineage,
  ): Promise<void> {
    const table = change.table;
    this.converter.expect(table);
    const identity = this.converter.identityTarget(table);
    if (identity !== undefined) {
      this.batchIdentity(await this.catalog.table(identity), change);
      return;
    }
    const ctx: TransformContext = { lookup: (t, where) => this.lookupThroughBatch(t, where) };
    // Keyed lineage is read back in PostgreSQL's text form: what is produced is compared in it too.
    const keyed = this.converter.keyedBy(table) !== undefined;
    const replace = async (keyRow: Row, row: Row | undefined) => {
      const outputs = row ? await this.converter.convert(table, row, ctx) : [];
      const sourceKey = this.converter.keyOf(table, keyRow);
      const produced: Targets = [];
      for (const output of outputs) {
        const target = this.catalog.known(output.table) ?? (await this.catalog.table(output.table));
        const raw = keyOf(target, output.row);
        const key = keyed ? canonicalKey(target, raw) : raw;
        // The batch collapses a row's writes by its key's spelling: a later delete of this row (read
        // back in PostgreSQL's form) must find the upsert under the same one.
        const same = key.every((v, i) => v === raw[i]);
        this.batch.upsertValues(target, same ? output.row : withKey(target, output.row, key));
        produced.push([output.table, key]);
      }
      const kept = new Set(produced.map(([t, k]) => `${t}\0${k.join('\0')}`));
      // tableKey: a lineage an earlier Imago wrote may spell a table otherwise (public.page).
      for (const [t, key] of lineage.get(table, sourceKey)) {
        if (!kept.has(`${tableKey(t)}\0${key.join('\0')}`))
          this.batch.deleteKey(await this.catalog.table(t), key);
      }
      lineage.set(table, sourceKey, row ? produced : null);
    };
    if (change.op === 'delete') return replace(change.old, undefined);
    if (change.op === 'update' && change.old) {
      // A changed key: the row under the old key is gone.
      if (this.converter.keyOf(table, change.old) !== this.converter.keyOf(table, change.new)) {
        await replace(change.old, undefined);
      }
    }
    await replace(change.new, change.new);
  }

  /**
   * A lookup that sees the group's pending writes as if they were written, without writing them when
   * the answer is certain: from a pending row, or from the database when the row it returns is not
   * about to change. Otherwise the pending writes are flushed first.
   */
  private async lookupThroughBatch(
    spelling: string,
    where: Record<string, TargetValue>,
  ): Promise<Row | undefined> {
    // The batch keeps tables by their canonical spelling, whichever one the transform looks up.
    const table = tableKey(spelling, 'a lookup');
    if (!this.batch.touches(table)) return lookupIn(this.client, table, where);
    const pending = this.batch.findPending(table, where);
    if (pending !== undefined && pending !== 'flush') return pending;
    if (pending === undefined) {
      const found = await lookupIn(this.client, table, where);
      if (found && !this.batch.pendingKey(table, found)) return found;
    }
    await this.batch.flush(this.client);
    return lookupIn(this.client, table, where);
  }

  private async applyChange(change: Change, lineage?: GroupLineage): Promise<void> {
    if (change.op === 'truncate') {
      await this.batch.flush(this.client);
      await lineage?.flush();
      for (const table of change.tables.filter((t) => this.converter.has(t))) {
        await this.truncate(table);
        lineage?.forgetTable(table);
      }
      return;
    }
    this.converter.expect(change.table);
    const table = change.table;
    const identity = this.converter.identityTarget(table);
    if (identity !== undefined) {
      this.batchIdentity(await this.catalog.table(identity), change);
      return;
    }
    // A transform may look up target rows: identity changes before it must be visible.
    await this.batch.flush(this.client);
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

  /**
   * A small group touching only identity tables (the common case under a steady trickle of writes)
   * goes as one simple-protocol script — BEGIN, its statements, the checkpoint, COMMIT — in a single
   * round trip, which is what bounds apply lag. Anything else takes the general path.
   */
  private async applyAsScript(
    txns: SourceTransaction[],
    lsn: Lsn,
    applied: AppliedFigures,
  ): Promise<boolean> {
    if (!this.batchScriptable(txns)) return false;
    const script = this.batch.script(SCRIPT_MAX_ROWS);
    if (script === undefined) return false;
    try {
      await this.client.query(
        `BEGIN;\n${script ? `${script};\n` : ''}${checkpointSql(this.stream, lsn, applied)};\nCOMMIT`,
      );
    } catch (err) {
      // A failed statement leaves the script's transaction open and aborted.
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    return true;
  }

  /** Batches a small group of identity changes; false when it is too large or not only those. */
  private batchScriptable(txns: SourceTransaction[]): boolean {
    let changes = 0;
    for (let t = 0; t < txns.length; t++) changes += (txns[t] as SourceTransaction).changes.length;
    if (changes > SCRIPT_MAX_ROWS) return false; // too large for a script: don't batch it twice
    this.batch.clear();
    for (const txn of txns)
      for (const change of txn.changes) if (!this.batchKnownIdentity(change)) return false;
    return true;
  }

  private batchKnownIdentity(change: Change): boolean {
    if (change.op === 'truncate') return false;
    const identity = this.converter.identityTarget(change.table);
    const target = identity === undefined ? undefined : this.catalog.known(identity);
    if (!target) return false;
    this.batchIdentity(target, change);
    return true;
  }

  private batchIdentity(target: TargetTable, change: Exclude<Change, { op: 'truncate' }>): void {
    if (change.op === 'delete') {
      this.batch.delete(target, change.old);
      return;
    }
    if (
      change.op === 'update' &&
      change.old &&
      keyString(target, change.old) !== keyString(target, change.new)
    ) {
      this.batch.delete(target, change.old);
    }
    this.batch.upsert(target, change.new, change.op === 'insert');
  }

  /** Makes the target hold exactly what `row` converts to (nothing when `row` is undefined). */
  private async replace(table: string, keyRow: Row, row: Row | undefined): Promise<void> {
    const outputs = row ? await this.converter.convert(table, row, this.ctx) : [];
    const sourceKey = this.converter.keyOf(table, keyRow);
    const keyed = this.converter.keyedBy(table);
    const previous = keyed
      ? ((await this.keyed.read(keyed, [sourceKey])).get(sourceKey) ?? [])
      : await readLineage(this.client, table, sourceKey);
    const produced = await this.write(outputs, keyed !== undefined);
    const kept = new Set(produced.map(([t, k]) => `${t}\0${k.join('\0')}`));
    // Delete in reverse order of production, so that rows referring to others go first.
    for (const [t, key] of [...previous].reverse()) {
      if (!kept.has(`${tableKey(t)}\0${key.join('\0')}`))
        await deleteByKey(this.client, await this.catalog.table(t), key);
    }
    if (keyed) return;
    if (row) await writeLineage(this.client, [{ sourceTable: table, sourceKey, targets: produced }]);
    else await deleteLineage(this.client, table, sourceKey);
  }

  /** Upserts the outputs; returns their keys (in PostgreSQL's text form for keyed lineage). */
  private async write(outputs: TargetRow[], canonical: boolean): Promise<Targets> {
    const produced: Targets = [];
    for (const [name, rows] of toRows(outputs)) {
      const target = await this.catalog.table(name);
      await upsert(this.client, target, rows);
      for (const row of rows) {
        const key = keyOf(target, row);
        produced.push([name, canonical ? canonicalKey(target, key) : key]);
      }
    }
    return produced;
  }

  private async truncate(table: string): Promise<void> {
    const identity = this.converter.identityTarget(table);
    if (identity !== undefined) {
      await this.client.query(`DELETE FROM ${quoteQualified(identity)}`);
      return;
    }
    const keyed = this.converter.keyedBy(table);
    if (keyed) return this.keyed.truncate(keyed);
    for (const [t, key] of (await takeTableLineage(this.client, table)).reverse()) {
      await deleteByKey(this.client, await this.catalog.table(t), key);
    }
  }
}
