/**
 * The change stream of the old database: pgoutput messages assembled into whole transactions and
 * handed over in commit order. The slot is acknowledged only with positions the caller says are
 * durably applied, so a crash replays from there and never skips a change. The stream never writes
 * to the old database. The caller can pause it (backpressure) while it has too much to apply.
 */
import { ReplicationConnection } from './replication-connection.js';
import type { Lsn } from './lsn.js';
import type { PgoutputSink } from './pgoutput.js';
import type { Change, SourceTransaction } from './change.js';

export interface ChangeStreamOptions {
  url: string;
  slotName: string;
  publication: string;
  /** The checkpoint (or the slot's consistent point): what is known to be applied already. */
  startLsn: Lsn;
  /** True when every transaction handed over so far has been applied. */
  applied(): boolean;
  /** Called for each whole transaction, in commit order, synchronously as it is decoded. */
  onTransaction(txn: SourceTransaction): void;
  /** The stream stopped because of an error (of the connection or of decoding). */
  onError(err: unknown): void;
}

export class ChangeStream {
  private readonly connection: ReplicationConnection;
  private current: SourceTransaction | undefined;
  private stopped = false;

  constructor(private readonly options: ChangeStreamOptions) {
    this.connection = new ReplicationConnection({
      url: options.url,
      slotName: options.slotName,
      publication: options.publication,
      startLsn: options.startLsn,
      sink: this.assembler(),
      // Idle: no transaction half-received, and everything received applied.
      isIdle: () => this.current === undefined && options.applied(),
      onError: (err) => {
        if (!this.stopped) options.onError(err);
      },
    });
  }

  /** Starts streaming from the slot's confirmed position; resolves once replication has started. */
  async start(): Promise<void> {
    await this.connection.start();
  }

  /** Confirms to the server that everything up to `lsn` is durably applied. */
  acknowledge(lsn: Lsn): void {
    this.connection.confirm(lsn);
    this.connection.flush();
  }

  pause(): void {
    this.connection.pause();
  }

  resume(): void {
    this.connection.resume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.connection.stop();
  }

  /** Whole transactions out of the decoded messages: a transaction is handed over at its commit. */
  private assembler(): PgoutputSink {
    return {
      begin: (xid) => {
        this.current = { xid, commitEndLsn: 0n, commitTimeMs: 0, changes: NO_CHANGES, messages: NO_MESSAGES };
      },
      change: (change: Change) => {
        const txn = this.current;
        if (!txn) return;
        // Sized for one change at first (most transactions): an empty array's first push reserves 17 slots.
        if (txn.changes === NO_CHANGES) txn.changes = [change];
        else txn.changes.push(change);
      },
      message: (transactional, lsn, prefix, content) => {
        const txn = this.current;
        if (transactional && txn) txn.messages = [...txn.messages, { prefix, content, lsn }];
      },
      commit: (commitEndLsn, commitTimeMs) => {
        const txn = this.current;
        this.current = undefined;
        if (!txn) return;
        txn.commitEndLsn = commitEndLsn;
        txn.commitTimeMs = commitTimeMs;
        this.options.onTransaction(txn);
      },
    };
  }
}

/** Shared by the transactions without logical messages (nearly all): one array less per transaction. */
const NO_MESSAGES: SourceTransaction['messages'] = Object.freeze([]);
/** Replaced at a transaction's first change; frozen, so a stray push fails loudly. */
const NO_CHANGES = Object.freeze([]) as unknown as Change[];
