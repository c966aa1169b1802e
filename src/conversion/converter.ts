/**
 * The conversion pipeline from the old database into the new one: publication and slot with an
 * exported snapshot (capture), bulk copy inside the snapshot, then the change stream applied
 * transaction by transaction. It also answers the switchover's question "has everything the old
 * database committed up to this fence been applied?" through fence markers: a logical message
 * written into the old database's WAL after the drain; once it has been applied, so has everything
 * committed before it. On the old database Imago creates only its publication and slot and writes
 * only those WAL messages (and REPLICA IDENTITY FULL where the plan consents); its tables are only read.
 */
import pg from 'pg';
import {
  describeSourceTables,
  createPublication,
  dropPublication,
  setReplicaIdentityFull,
  type SourceTable,
} from '../capture/publication.js';
import {
  createSlotWithSnapshot,
  dropSlot,
  releaseSlot,
  slotExists,
  type ExportedSlot,
} from '../capture/slot.js';
import { ChangeStream } from '../capture/stream.js';
import { watchWal } from '../capture/wal-watch.js';
import { markPublication } from '../capture/orphans.js';
import { publicationName, slotName } from '../capture/names.js';
import type { SourceTransaction } from '../capture/change.js';
import { formatLsn, parseLsn, type Lsn } from '../capture/lsn.js';
import { ImagoError, errorMessage } from '../errors.js';
import { connectClient } from '../database.js';
import { withDeadline } from '../deadline.js';
import type { Conversion } from './api.js';
import { Applier } from './applier.js';
import { ApplyQueue } from './apply-queue.js';
import { copySnapshot, type CopyProgress, type CopyResult } from './copier.js';
import { RowConverter } from './row-converter.js';
import { readFence } from './read-fence.js';
import { bringSequencesPast } from './sequences.js';
import { analyzeTargets } from './statistics.js';
import { emptyTargets } from './empty-targets.js';
import {
  ensureStateSchema,
  readCheckpoint,
  readLineageModes,
  recordLineageModes,
  resetTargets,
  writeCheckpoint,
} from './state.js';
import { DuplicateKeysError, restoreDeferred } from './deferred-indexes.js';
import { TargetCatalog } from './target.js';

export interface ConverterOptions {
  sourceUrl: string;
  targetUrl: string;
  conversion: Conversion;
  /** Names the slot, the publication and the checkpoint (letters, digits, underscores). */
  name: string;
  /**
   * Tables the plan consents to switch to REPLICA IDENTITY FULL on the old database (needed for
   * tables without a primary key, and for transforms that must see unchanged TOASTed values).
   * Imago changes nothing on the old database without this consent.
   */
  replicaIdentityFull?: string[];
  /** Tables the bulk copy converts at once (default 1). */
  parallel?: number;
  /** Waited on between copy batches: the copy yields while the old universe is busy. */
  throttle?: { wait(): Promise<void> };
  /** WAL the slot may hold on the old database: a warning past `warnBytes`, a pause past `limitBytes`. */
  wal?: { warnBytes?: number; limitBytes?: number; intervalMs?: number };
  /** Warnings for people (retained WAL growing, throttling). */
  onWarning?: (message: string) => void;
}

const GiB = 1024 ** 3;

export interface ConversionStats {
  copiedRows: number;
  convertedRows: number;
  appliedTransactions: number;
  appliedChanges: number;
  appliedLsn: string;
  /** Commit time of the last applied source transaction → now, at the moment it was applied. */
  lastApplyLagMs: number;
  /** Target tables ANALYZEd after the copy (or on resume), and how long that took; set when done. */
  analyzedTables?: number;
  analyzeMs?: number;
}

const MARKER_PREFIX = 'imago';

/** What observers learn about each applied source transaction (late-write detection, progress). */
export interface AppliedTransaction {
  commitEndLsn: Lsn;
  commitTime: Date;
  /** Source tables the transaction changed, with the number of changes. */
  tables: Record<string, number>;
  /** True when the transaction only carried Imago's fence marker. */
  markerOnly: boolean;
}

export class Converter {
  private source!: pg.Client;
  private target!: pg.Client;
  private converter!: RowConverter;
  private catalog!: TargetCatalog;
  private applier!: Applier;
  private stream: ChangeStream | undefined;
  private queue: ApplyQueue | undefined;
  private slot: ExportedSlot | undefined;
  private resumed = false;
  private stopWalWatch: (() => Promise<void>) | undefined;
  /** The targets' ANALYZE after the copy (statistics.ts); never rejects. */
  private statistics: Promise<void> | undefined;
  /** Aborted when stop() begins: cancels the ANALYZE and keeps a late copy or resume from starting one. */
  private readonly stopping = new AbortController();
  private onFailure: ((err: unknown) => void) | undefined;
  private applied: Lsn = 0n;
  private failure: unknown;
  private readonly markerWaiters = new Map<string, { resolve: () => void; reject: (err: unknown) => void }>();
  private markerSeq = 0;
  /** Queries on the old database's connection, chained so that concurrent callers never overlap. */
  private sourceQueries: Promise<void> = Promise.resolve();
  private readonly appliedListeners: ((txn: AppliedTransaction) => void)[] = [];
  private readonly stats: ConversionStats = {
    copiedRows: 0,
    convertedRows: 0,
    appliedTransactions: 0,
    appliedChanges: 0,
    appliedLsn: '0/0',
    lastApplyLagMs: 0,
  };

  constructor(private readonly options: ConverterOptions) {
    if (!/^[a-z_][a-z0-9_]*$/.test(options.name)) {
      throw new ImagoError(
        `invalid upgrade name "${options.name}"`,
        options.name,
        'use lower-case letters, digits and underscores',
      );
    }
  }

  get slotName(): string {
    return slotName(this.options.name);
  }

  get publicationName(): string {
    return publicationName(this.options.name);
  }

  /**
   * Connects to both databases and checks the tables. A conversion of the same name that had finished
   * its copy resumes from its checkpoint on its slot; one interrupted during the copy (its snapshot is
   * gone with its connection) is reset — the target tables it wrote are emptied — and starts over.
   * Otherwise the publication and the slot with an exported snapshot are created.
   */
  async prepare(
    log: (line: string) => void = () => {},
    /** neverReset: once the new universe may serve, never empty its tables: fail instead. */
    { neverReset = false }: { neverReset?: boolean } = {},
  ): Promise<{ tables: SourceTable[]; resumed: boolean }> {
    this.source = await connectClient(this.options.sourceUrl, 'old');
    this.target = await connectClient(this.options.targetUrl, 'new');
    for (const table of this.options.replicaIdentityFull ?? []) {
      log(`setting REPLICA IDENTITY FULL on ${table} (the plan consents)`);
      await setReplicaIdentityFull(this.source, table);
    }
    const tables = await describeSourceTables(this.source, Object.keys(this.options.conversion.tables));
    this.converter = new RowConverter(this.options.conversion, tables);
    this.catalog = new TargetCatalog(this.target);
    this.applier = new Applier(this.target, this.converter, this.catalog, this.options.name);
    await ensureStateSchema(this.target);
    const checkpoint = await readCheckpoint(this.target, this.options.name);
    const hasSlot = await slotExists(this.source, this.slotName);
    if (hasSlot) await releaseSlot(this.source, this.slotName);
    if (checkpoint?.copied && hasSlot) {
      await this.checkLineageModes();
      this.resumed = true;
      this.applied = checkpoint.lsn;
      // What earlier processes copied and applied: the figures are the conversion's, not this process's.
      this.stats.copiedRows = checkpoint.copy.rows;
      this.stats.convertedRows = checkpoint.copy.targetRows;
      this.stats.appliedTransactions = checkpoint.applied.transactions;
      this.stats.appliedChanges = checkpoint.applied.changes;
      this.stats.appliedLsn = formatLsn(checkpoint.lsn);
      log(`resuming ${this.options.name} from its checkpoint at ${formatLsn(checkpoint.lsn)}`);
      this.watchWal();
      return { tables, resumed: true };
    }
    if ((checkpoint || hasSlot) && neverReset) {
      throw new ImagoError(
        `${this.options.name} cannot resume: ${hasSlot ? 'its copy never finished' : 'its replication slot is gone'}, and starting the copy over would empty the new database`,
        this.slotName,
        'the new universe keeps serving as it is; finish the upgrade, or abort and start a new one',
      );
    }
    if (checkpoint || hasSlot) {
      log(
        `${this.options.name} was interrupted ${checkpoint?.copied ? 'and its slot is gone' : 'during the copy'}: starting the copy over`,
      );
      await resetTargets(this.target, this.options.name);
    }
    await dropSlot(this.source, this.slotName);
    await dropPublication(this.source, this.publicationName);
    await createPublication(this.source, this.publicationName, tables);
    await markPublication(this.source, this.publicationName, this.options.name);
    this.slot = await createSlotWithSnapshot(this.options.sourceUrl, this.slotName, { onWait: log });
    await writeCheckpoint(this.target, this.options.name, this.slot.consistentPoint, false);
    await recordLineageModes(this.target, this.options.name, this.converter.lineageModes());
    this.watchWal();
    return { tables, resumed: false };
  }

  /** A resume keeps each table's lineage as its copy did: otherwise updates and deletes miss rows. */
  private async checkLineageModes(): Promise<void> {
    const recorded = await readLineageModes(this.target, this.options.name);
    for (const [table, mode] of this.converter.lineageModes()) {
      const was = recorded.get(table) ?? 'stored';
      if (was === mode) continue;
      const say = (m: string) =>
        m === 'stored' ? 'as lineage rows' : `in its target rows (sourceKeyIn ${m.slice('keyed '.length)})`;
      throw new ImagoError(
        `${table}'s lineage was kept ${say(was)} when ${this.options.name} copied it, and the plan now keeps it ${say(mode)}: updates and deletes would miss rows or remove the wrong ones`,
        `${table}.sourceKeyIn`,
        'put sourceKeyIn back as it was when the copy ran, or abort the upgrade and start it again (the copy is redone)',
      );
    }
  }

  /**
   * Copies and converts every table as of the slot's snapshot; returns what this call copied (nothing
   * when resumed: the copy was done before, and conversionStats() has its figures).
   */
  async copy(onProgress?: (p: CopyProgress) => void): Promise<CopyResult> {
    if (this.resumed) return { rows: 0, bytes: 0, targetRows: 0 };
    const slot = this.slot;
    if (!slot) throw new Error('prepare() first');
    const copy = (deferIndexes: boolean) =>
      copySnapshot({
        sourceUrl: this.options.sourceUrl,
        targetUrl: this.options.targetUrl,
        snapshotName: slot.snapshotName,
        converter: this.converter,
        parallel: this.options.parallel,
        // Between batches: stop if the conversion failed meanwhile (e.g. the WAL limit), else let the throttle decide.
        throttle: {
          wait: async () => {
            if (this.failure) throw this.failure;
            await this.options.throttle?.wait();
          },
        },
        onProgress,
        deferIndexes,
      });
    try {
      let result: CopyResult;
      try {
        result = await copy(true);
      } catch (err) {
        if (!(err instanceof DuplicateKeysError)) throw err;
        // N:1 outputs: the unique indexes must be there while copying (conflicts become upserts).
        this.options.onWarning?.(`${err.message}; ${err.hint ?? ''}`);
        await emptyTargets(this.target);
        result = await copy(false);
      }
      await writeCheckpoint(this.target, this.options.name, slot.consistentPoint, true, result);
      this.applied = slot.consistentPoint;
      this.gatherStatistics();
      this.stats.copiedRows = result.rows;
      this.stats.convertedRows = result.targetRows;
      this.stats.appliedLsn = formatLsn(slot.consistentPoint);
      return result;
    } finally {
      await slot.release();
    }
  }

  /** Streams changes from the slot's consistent point (or the checkpoint) until stopped. */
  async startStreaming(onError: (err: unknown) => void): Promise<void> {
    const checkpoint = await readCheckpoint(this.target, this.options.name);
    this.applied = checkpoint?.lsn ?? 0n;
    // A resume skipped the copy: analyze whatever a crash left without statistics.
    if (this.resumed) this.gatherStatistics();
    this.onFailure = onError;
    if (this.failure) throw this.failure;
    const failed = (err: unknown) => this.fail(err);
    this.queue = new ApplyQueue({
      applyGroup: (txns) => this.applyGroup(txns),
      onFailure: failed,
      pause: () => this.stream?.pause(),
      resume: () => this.stream?.resume(),
    });
    this.stream = new ChangeStream({
      url: this.options.sourceUrl,
      slotName: this.slotName,
      publication: this.publicationName,
      startLsn: this.applied,
      applied: () => this.queue?.idle() ?? true,
      onTransaction: (txn) => this.onTransaction(txn),
      onError: failed,
    });
    await this.stream.start();
  }

  /**
   * Writes a fence marker into the old database's WAL and waits until the stream has applied it:
   * then everything the old database committed before the call has been applied too.
   */
  async catchUp(timeoutMs: number): Promise<{ markerLsn: Lsn; waitedMs: number }> {
    if (this.failure) throw this.failure;
    const content = `fence:${process.pid}:${++this.markerSeq}`;
    const applied = new Promise<void>((resolve, reject) =>
      this.markerWaiters.set(content, { resolve, reject }),
    );
    applied.catch(() => {}); // observed below; never an unhandled rejection if the emit fails first
    const started = Date.now();
    // Callers may overlap (barriers, the switchover): their markers go one at a time on the connection.
    const emitted = this.onSource(() =>
      this.source.query<{ lsn: string }>('SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn', [
        MARKER_PREFIX,
        content,
      ]),
    );
    try {
      // The deadline covers writing the marker too: a stuck old database must not hang the switch.
      const [{ rows }] = await withDeadline(
        'catch-up of the change stream to the fence',
        Promise.all([emitted, applied]),
        timeoutMs,
        'the conversion is too far behind, or the old database does not answer; retry when the lag is lower',
      );
      return { markerLsn: parseLsn(rows[0]?.lsn ?? '0/0'), waitedMs: Date.now() - started };
    } finally {
      this.markerWaiters.delete(content);
    }
  }

  /**
   * Resolves once everything the old database committed before the call has been applied, writing a
   * marker only when no transaction passes the old WAL's current position soon (read-fence.ts).
   */
  async readFence(timeoutMs: number, markerAfterMs?: number): Promise<'passed' | 'marker'> {
    if (this.failure) throw this.failure;
    return readFence(
      {
        insertLsn: async () => {
          const { rows } = await this.onSource(() =>
            this.source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn'),
          );
          return parseLsn(rows[0]?.lsn ?? '0/0');
        },
        appliedLsn: () => this.applied,
        onApplied: (listener) => this.onApplied(listener),
        catchUp: (ms) => this.catchUp(ms),
      },
      timeoutMs,
      markerAfterMs,
    );
  }

  /** Runs a query on the source connection after those already queued (callers overlap). */
  private onSource<T>(run: () => Promise<T>): Promise<T> {
    const result = this.sourceQueries.then(run);
    this.sourceQueries = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /**
   * Starts the targets' ANALYZE beside the stream, off the copy's path: the copy is done once its rows
   * and indexes are, and the stream should not wait (the slot retains WAL meanwhile). The switch's
   * precheck waits for it (statisticsReady). A failure is a warning: statistics only guide plans.
   */
  private gatherStatistics(): void {
    if (this.statistics || this.stopping.signal.aborted) return;
    const started = performance.now();
    this.statistics = analyzeTargets(
      this.options.targetUrl,
      this.options.parallel ?? 1,
      this.stopping.signal,
    ).then(
      ({ analyzed, missing, failed }) => {
        this.stats.analyzedTables = analyzed.length;
        this.stats.analyzeMs = Math.round(performance.now() - started);
        for (const f of failed) this.options.onWarning?.(`could not analyze ${f.table}: ${f.error}`);
        if (missing.length > 0)
          this.options.onWarning?.(
            `no planner statistics for ${missing.join(', ')} after ANALYZE (is Imago's role allowed to maintain them?): the new version's queries there are planned from guesses`,
          );
      },
      (err: unknown) => {
        // Stopped: the next run analyzes what is still without statistics.
        if (!this.stopping.signal.aborted)
          this.options.onWarning?.(`could not analyze the target tables: ${errorMessage(err)}`);
      },
    );
  }

  /** Resolves once the target tables have planner statistics (at once when nothing was started). */
  async statisticsReady(): Promise<void> {
    await this.statistics;
  }

  async bringSequencesPast(): Promise<number> {
    return bringSequencesPast(this.target);
  }

  /** Calls `listener` after each source transaction has been applied and checkpointed; returns an unsubscribe. */
  onApplied(listener: (txn: AppliedTransaction) => void): () => void {
    this.appliedListeners.push(listener);
    return () => {
      const i = this.appliedListeners.indexOf(listener);
      if (i >= 0) this.appliedListeners.splice(i, 1);
    };
  }

  /** Why the conversion stopped, if it did (a transform error, the WAL limit, a lost connection). */
  failed(): unknown {
    return this.failure;
  }

  /** The commit LSN of the last applied source transaction. */
  appliedLsn(): Lsn {
    return this.applied;
  }

  conversionStats(): ConversionStats {
    return { ...this.stats };
  }

  private watchWal(): void {
    const wal = this.options.wal ?? {};
    this.stopWalWatch = watchWal({
      url: this.options.sourceUrl,
      slotName: this.slotName,
      warnBytes: wal.warnBytes ?? 1 * GiB,
      limitBytes: wal.limitBytes ?? 16 * GiB,
      intervalMs: wal.intervalMs,
      onWarn: (message) => this.options.onWarning?.(message),
      onLimit: (err) => this.fail(err),
    });
  }

  /** Stops the conversion with `err`: the stream stops, waiters and the copy see the error. */
  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = err;
    for (const waiter of this.markerWaiters.values()) waiter.reject(err);
    void this.stream?.stop();
    this.onFailure?.(err);
  }

  /** Stops streaming and closes connections; the slot stays (for a resume) unless `dropCapture`. */
  async stop({ dropCapture = false } = {}): Promise<void> {
    this.stopping.abort();
    await this.stopWalWatch?.();
    await this.stream?.stop();
    await this.statistics; // cancelled on the server, its connections ended
    await this.slot?.release().catch(() => {});
    if (dropCapture && this.source) {
      // The server-side walsender outlives our connection for a moment; a slot still active cannot be dropped.
      await releaseSlot(this.source, this.slotName)
        .then(() => dropSlot(this.source, this.slotName))
        .catch((err: unknown) =>
          this.options.onWarning?.(`could not drop slot ${this.slotName}: ${errorMessage(err)}`),
        );
      await dropPublication(this.source, this.publicationName).catch(() => {});
    }
    if (dropCapture && this.target) {
      // Aborted during the copy: the new schema gets back the indexes the copy had deferred.
      await restoreDeferred(this.options.targetUrl).catch((err: unknown) =>
        this.options.onWarning?.(`could not rebuild deferred indexes: ${errorMessage(err)}`),
      );
    }
    await this.source?.end().catch(() => {});
    await this.target?.end().catch(() => {});
  }

  private onTransaction(txn: SourceTransaction): void {
    // Already applied before a restart: the checkpoint covers it.
    if (txn.commitEndLsn <= this.applied) {
      this.stream?.acknowledge(txn.commitEndLsn);
      return;
    }
    this.queue?.push(txn);
  }

  private async applyGroup(txns: SourceTransaction[]): Promise<void> {
    const last = txns[txns.length - 1];
    if (!last) return;
    await this.applier.apply(txns);
    this.applied = last.commitEndLsn;
    this.stream?.acknowledge(last.commitEndLsn);
    this.stats.appliedTransactions += txns.length;
    this.stats.appliedLsn = formatLsn(last.commitEndLsn);
    this.stats.lastApplyLagMs = Date.now() - last.commitTimeMs;
    for (let i = 0; i < txns.length; i++) {
      const txn = txns[i] as SourceTransaction;
      this.stats.appliedChanges += txn.changes.length;
      this.notify(txn);
    }
  }

  private notify(txn: SourceTransaction): void {
    if (this.appliedListeners.length > 0) {
      const tables: Record<string, number> = {};
      for (const change of txn.changes) {
        for (const table of change.op === 'truncate' ? change.tables : [change.table])
          tables[table] = (tables[table] ?? 0) + 1;
      }
      const markerOnly = txn.changes.length === 0 && txn.messages.some((m) => m.prefix === MARKER_PREFIX);
      const commitTime = new Date(txn.commitTimeMs);
      for (const listener of this.appliedListeners) {
        listener({ commitEndLsn: txn.commitEndLsn, commitTime, tables, markerOnly });
      }
    }
    // Indexed: the for…of iterator here was measured as one allocation per applied transaction.
    for (let i = 0; i < txn.messages.length; i++) {
      const message = txn.messages[i] as SourceTransaction['messages'][number];
      if (message.prefix === MARKER_PREFIX) this.markerWaiters.get(message.content)?.resolve();
    }
  }
}
