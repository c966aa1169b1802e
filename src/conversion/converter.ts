/**
 * The conversion pipeline from the old database into the new one: publication and slot with an
 * exported snapshot (capture), bulk copy inside the snapshot, then the change stream applied
 * transaction by transaction. It also answers the switchover's question "has everything the old
 * database committed up to this fence been applied?" through fence markers: a logical message
 * written into the old database's WAL after the drain; once it has been applied, so has everything
 * committed before it. The old database is only read, apart from that WAL message.
 */
import pg from 'pg';
import {
  describeSourceTables,
  createPublication,
  dropPublication,
  type SourceTable,
} from '../capture/publication.js';
import { createSlotWithSnapshot, dropSlot, type ExportedSlot } from '../capture/slot.js';
import { ChangeStream } from '../capture/stream.js';
import type { SourceTransaction } from '../capture/change.js';
import { formatLsn, parseLsn, type Lsn } from '../capture/lsn.js';
import { ImagoError, errorMessage } from '../errors.js';
import { redactUrl } from '../redact.js';
import { withDeadline } from '../deadline.js';
import type { Conversion } from './api.js';
import { Applier } from './applier.js';
import { copySnapshot, type CopyProgress, type CopyResult } from './copier.js';
import { RowConverter } from './row-converter.js';
import { bringSequencesPast } from './sequences.js';
import { ensureStateSchema, readCheckpoint, writeCheckpoint } from './state.js';
import { TargetCatalog } from './target.js';

export interface ConverterOptions {
  sourceUrl: string;
  targetUrl: string;
  conversion: Conversion;
  /** Names the slot, the publication and the checkpoint (letters, digits, underscores). */
  name: string;
}

export interface ConversionStats {
  copiedRows: number;
  convertedRows: number;
  appliedTransactions: number;
  appliedChanges: number;
  appliedLsn: string;
  /** Commit time of the last applied source transaction → now, at the moment it was applied. */
  lastApplyLagMs: number;
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
  private slot: ExportedSlot | undefined;
  private applied: Lsn = 0n;
  private failure: unknown;
  private readonly markerWaiters = new Map<string, { resolve: () => void; reject: (err: unknown) => void }>();
  private markerSeq = 0;
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
    return `${this.options.name}_slot`;
  }

  get publicationName(): string {
    return `${this.options.name}_pub`;
  }

  /** Connects to both databases, checks the tables, creates the publication and the slot. */
  async prepare(): Promise<{ tables: SourceTable[] }> {
    this.source = await connect(this.options.sourceUrl, 'old');
    this.target = await connect(this.options.targetUrl, 'new');
    const tables = await describeSourceTables(this.source, Object.keys(this.options.conversion.tables));
    this.converter = new RowConverter(this.options.conversion, tables);
    this.catalog = new TargetCatalog(this.target);
    this.applier = new Applier(this.target, this.converter, this.catalog, this.options.name);
    await ensureStateSchema(this.target);
    await dropSlot(this.source, this.slotName);
    await dropPublication(this.source, this.publicationName);
    await createPublication(this.source, this.publicationName, tables);
    this.slot = await createSlotWithSnapshot(this.options.sourceUrl, this.slotName);
    return { tables };
  }

  /** Copies and converts every table as of the slot's snapshot. */
  async copy(onProgress?: (p: CopyProgress) => void): Promise<CopyResult> {
    const slot = this.slot;
    if (!slot) throw new Error('prepare() first');
    try {
      const result = await copySnapshot({
        sourceUrl: this.options.sourceUrl,
        snapshotName: slot.snapshotName,
        target: this.target,
        converter: this.converter,
        catalog: this.catalog,
        onProgress,
      });
      await writeCheckpoint(this.target, this.options.name, slot.consistentPoint, true);
      this.applied = slot.consistentPoint;
      this.stats.copiedRows = result.rows;
      this.stats.convertedRows = result.targetRows;
      return result;
    } finally {
      await slot.release();
    }
  }

  /** Streams changes from the slot's consistent point (or the checkpoint) until stopped. */
  async startStreaming(onError: (err: unknown) => void): Promise<void> {
    const checkpoint = await readCheckpoint(this.target, this.options.name);
    this.applied = checkpoint?.lsn ?? 0n;
    this.stream = new ChangeStream({
      url: this.options.sourceUrl,
      slotName: this.slotName,
      publication: this.publicationName,
      onTransaction: (txn) => this.onTransaction(txn),
      onError: (err) => {
        this.failure = err;
        for (const waiter of this.markerWaiters.values()) waiter.reject(err);
        onError(err);
      },
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
    const started = Date.now();
    const { rows } = await this.source.query<{ lsn: string }>(
      'SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn',
      [MARKER_PREFIX, content],
    );
    try {
      await withDeadline(
        'catch-up of the change stream to the fence',
        applied,
        timeoutMs,
        'the conversion is too far behind; retry when the lag is lower',
      );
    } finally {
      this.markerWaiters.delete(content);
    }
    return { markerLsn: parseLsn(rows[0]?.lsn ?? '0/0'), waitedMs: Date.now() - started };
  }

  async bringSequencesPast(): Promise<number> {
    return bringSequencesPast(this.target);
  }

  /** Calls `listener` after each source transaction has been applied and checkpointed. */
  onApplied(listener: (txn: AppliedTransaction) => void): void {
    this.appliedListeners.push(listener);
  }

  /** The commit LSN of the last applied source transaction. */
  appliedLsn(): Lsn {
    return this.applied;
  }

  conversionStats(): ConversionStats {
    return { ...this.stats };
  }

  /** Stops streaming and closes connections; the slot stays (for a resume) unless `dropCapture`. */
  async stop({ dropCapture = false } = {}): Promise<void> {
    await this.stream?.stop();
    await this.slot?.release().catch(() => {});
    if (dropCapture && this.source) {
      await dropSlot(this.source, this.slotName).catch(() => {});
      await dropPublication(this.source, this.publicationName).catch(() => {});
    }
    await this.source?.end().catch(() => {});
    await this.target?.end().catch(() => {});
  }

  private async onTransaction(txn: SourceTransaction): Promise<void> {
    // Already applied before a restart: the checkpoint covers it.
    if (txn.commitEndLsn <= this.applied) {
      this.stream?.acknowledge(txn.commitEndLsn);
      return;
    }
    await this.applier.apply(txn);
    this.applied = txn.commitEndLsn;
    this.stream?.acknowledge(txn.commitEndLsn);
    this.stats.appliedTransactions++;
    this.stats.appliedChanges += txn.changes.length;
    this.stats.appliedLsn = formatLsn(txn.commitEndLsn);
    this.stats.lastApplyLagMs = Date.now() - txn.commitTime.getTime();
    const tables: Record<string, number> = {};
    for (const change of txn.changes) {
      for (const table of change.op === 'truncate' ? change.tables : [change.table])
        tables[table] = (tables[table] ?? 0) + 1;
    }
    const markerOnly = txn.changes.length === 0 && txn.messages.some((m) => m.prefix === MARKER_PREFIX);
    for (const listener of this.appliedListeners)
      listener({ commitEndLsn: txn.commitEndLsn, commitTime: txn.commitTime, tables, markerOnly });
    for (const message of txn.messages) {
      if (message.prefix === MARKER_PREFIX) this.markerWaiters.get(message.content)?.resolve();
    }
  }
}

async function connect(url: string, which: 'old' | 'new'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw new ImagoError(
      `cannot connect to the ${which} database: ${errorMessage(err)}`,
      redactUrl(url),
      'check the connection string and that the server is running',
    );
  }
  return client;
}
