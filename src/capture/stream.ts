/**
 * The change stream of the old database: pgoutput over a logical replication connection, assembled
 * into whole transactions and handed over one at a time, in commit order. The slot is acknowledged
 * only with positions the caller says are durably applied, so a crash replays from there and never
 * skips a change. The stream never writes to the old database.
 */
import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import { TextPgoutputPlugin } from './decoder.js';
import { formatLsn, parseLsn, type Lsn } from './lsn.js';
import type { Change, Row, SourceTransaction } from './change.js';

export interface ChangeStreamOptions {
  url: string;
  slotName: string;
  publication: string;
  /** Called for each whole transaction, in commit order; the next one waits until this resolves. */
  onTransaction(txn: SourceTransaction): Promise<void>;
  /** The stream stopped because of an error (of the connection, or thrown by onTransaction). */
  onError(err: unknown): void;
}

export class ChangeStream {
  private readonly service: LogicalReplicationService;
  private current: SourceTransaction | undefined;
  private acknowledged: Lsn = 0n;
  private failed = false;
  private stopping = false;

  constructor(private readonly options: ChangeStreamOptions) {
    this.service = new LogicalReplicationService(
      { connectionString: options.url },
      // Never acknowledge on the library's own timer: only applied positions may be confirmed.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
    this.service.on('data', (_lsn: string, message: Pgoutput.Message) => this.onMessage(message));
    this.service.on('heartbeat', (_lsn: string, _time: number, shouldRespond: boolean) => {
      if (shouldRespond) void this.sendStatus();
    });
    this.service.on('error', (err: Error) => this.fail(err));
  }

  /** Starts streaming from the slot's confirmed position; resolves once replication has started. */
  async start(): Promise<void> {
    const started = new Promise<void>((resolve) => this.service.once('start', () => resolve()));
    const plugin = new TextPgoutputPlugin({
      protoVersion: 1,
      publicationNames: [this.options.publication],
      messages: true,
    });
    const subscribed = this.service
      .subscribe(plugin, this.options.slotName)
      .catch((err: unknown) => this.fail(err));
    await Promise.race([started, subscribed.then(() => undefined)]);
    if (this.failed) throw new Error(`change stream of slot ${this.options.slotName} did not start`);
  }

  /** Confirms to the server that everything up to `lsn` is durably applied (WAL before it may be recycled). */
  acknowledge(lsn: Lsn): void {
    if (lsn > this.acknowledged) this.acknowledged = lsn;
    void this.sendStatus();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.service.destroy().catch(() => {});
  }

  private async sendStatus(): Promise<void> {
    if (this.acknowledged === 0n) return;
    await this.service.acknowledge(formatLsn(this.acknowledged)).catch((err: unknown) => this.fail(err));
  }

  private fail(err: unknown): void {
    if (this.failed || this.stopping) return;
    this.failed = true;
    void this.service.stop().catch(() => {});
    this.options.onError(err);
  }

  private async onMessage(message: Pgoutput.Message): Promise<void> {
    if (this.failed) return;
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
        this.push({ op: 'insert', table: tableName(message.relation), new: message.new as Row });
        return;
      case 'update':
        this.push({
          op: 'update',
          table: tableName(message.relation),
          new: message.new as Row,
          old: (message.old ?? message.key) as Row | null,
        });
        return;
      case 'delete':
        this.push({
          op: 'delete',
          table: tableName(message.relation),
          old: (message.old ?? message.key ?? {}) as Row,
        });
        return;
      case 'truncate':
        this.push({ op: 'truncate', tables: message.relations.map(tableName) });
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
        try {
          await this.options.onTransaction(txn);
        } catch (err) {
          this.fail(err);
        }
        return;
      }
      default:
        return; // relation, type and origin messages carry nothing to apply
    }
  }

  private push(change: Change): void {
    this.current?.changes.push(change);
  }
}

function tableName(relation: Pgoutput.MessageRelation): string {
  return relation.schema === 'public' ? relation.name : `${relation.schema}.${relation.name}`;
}
