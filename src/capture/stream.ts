/**
 * The change stream of the old database: pgoutput messages assembled into whole transactions and
 * handed over in commit order. The slot is acknowledged only with positions the caller says are
 * durably applied, so a crash replays from there and never skips a change. The stream never writes
 * to the old database. The caller can pause it (backpressure) while it has too much to apply.
 */
import { ReplicationConnection } from './replication-connection.js';
import type { Lsn } from './lsn.js';
import type { Decoded } from './pgoutput.js';
import type { SourceTransaction } from './change.js';

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
      onMessage: (message) => this.onMessage(message),
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

  private onMessage(message: Decoded): void {
    switch (message.tag) {
      case 'begin':
        this.current = {
          xid: message.xid,
          commitEndLsn: 0n,
          commitTime: new Date(0),
          changes: [],
          messages: [],
        };
        return;
      case 'insert':
        this.current?.changes.push({ op: 'insert', table: message.relation.table, new: message.new });
        return;
      case 'update':
        this.current?.changes.push({
          op: 'update',
          table: message.relation.table,
          new: message.new,
          old: message.old,
        });
        return;
      case 'delete':
        this.current?.changes.push({ op: 'delete', table: message.relation.table, old: message.old });
        return;
      case 'truncate':
        this.current?.changes.push({ op: 'truncate', tables: message.relations.map((r) => r.table) });
        return;
      case 'message':
        if (message.transactional && this.current) {
          this.current.messages.push({ prefix: message.prefix, content: message.content, lsn: message.lsn });
        }
        return;
      case 'commit': {
        const txn = this.current;
        this.current = undefined;
        if (!txn) return;
        txn.commitEndLsn = message.commitEndLsn;
        txn.commitTime = new Date(message.commitTimeMs);
        this.options.onTransaction(txn);
        return;
      }
      default:
        return;
    }
  }
}
