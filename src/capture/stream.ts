/**
 * The change stream of the old database: pgoutput messages assembled into whole transactions and
 * handed over in commit order. The slot is acknowledged only with positions the caller says are
 * durably applied, so a crash replays from there and never skips a change. The stream never writes
 * to the old database. The caller can pause it (backpressure) while it has too much to apply.
 */
import type { Pgoutput } from 'pg-logical-replication';
import { ReplicationConnection } from './replication-connection.js';
import { parseLsn, type Lsn } from './lsn.js';
import type { Change, Row, SourceTransaction } from './change.js';

export interface ChangeStreamOptions {
  url: string;
  slotName: string;
  publication: string;
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
      onMessage: (message) => this.onMessage(message),
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

  private onMessage(message: Pgoutput.Message): void {
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
        this.current?.changes.push({
          op: 'insert',
          table: tableName(message.relation),
          new: message.new as Row,
        });
        return;
      case 'update':
        this.current?.changes.push({
          op: 'update',
          table: tableName(message.relation),
          new: message.new as Row,
          old: (message.old ?? message.key) as Row | null,
        });
        return;
      case 'delete':
        this.current?.changes.push({
          op: 'delete',
          table: tableName(message.relation),
          old: (message.old ?? message.key ?? {}) as Row,
        });
        return;
      case 'truncate':
        this.current?.changes.push({
          op: 'truncate',
          tables: message.relations.map(tableName),
        } satisfies Change);
        return;
      case 'message':
        if (message.transactional && this.current && message.messageLsn) {
          this.current.messages.push({
            prefix: message.prefix,
            content: Buffer.from(message.content).toString('utf8'),
            lsn: parseLsn(message.messageLsn),
          });
        }
        return;
      case 'commit': {
        const txn = this.current;
        this.current = undefined;
        if (!txn || !message.commitEndLsn) return;
        txn.commitEndLsn = parseLsn(message.commitEndLsn);
        txn.commitTime = new Date(Number((message.commitTime as bigint) / 1000n));
        this.options.onTransaction(txn);
        return;
      }
      default:
        return; // relation, type and origin messages carry nothing to apply
    }
  }
}

function tableName(relation: Pgoutput.MessageRelation): string {
  return relation.schema === 'public' ? relation.name : `${relation.schema}.${relation.name}`;
}
