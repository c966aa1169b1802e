/**
 * The streaming replication protocol for one logical slot, on node-postgres's connection (which
 * connects, authenticates and reports the query's outcome): once START_REPLICATION is sent, the
 * CopyData messages are cut out of the socket's chunks by Imago's framer, XLogData decoded
 * (pgoutput.ts) into the caller's sink synchronously, keepalives answered, and standby status
 * updates carry only the position the caller confirms. Backpressure is the socket itself:
 * `pause()` stops reading, so the server's send buffer fills and the walsender waits. Catching up,
 * small reads are coalesced (read-coalescer.ts).
 *
 * (pg-logical-replication's service queues every message behind a promise and an event emitter; at
 * hundreds of thousands of messages per second that overhead dominated the pipeline.)
 */
import pg from 'pg';
import { PgoutputDecoder, PG_EPOCH_US, pgTimestampMs, type PgoutputSink } from './pgoutput.js';
import { CopyDataFramer } from './copy-data-framer.js';
import { ReadCoalescer } from './read-coalescer.js';
import type { Lsn } from './lsn.js';
import { quoteIdent } from '../sql.js';

const STATUS_INTERVAL_MS = 10_000;

interface Connection {
  sendCopyFromChunk(chunk: Buffer): void;
  once(event: 'replicationStart', listener: () => void): void;
  stream: NodeJS.EventEmitter & { pause(): void; resume(): void };
}

export interface ReplicationOptions {
  url: string;
  slotName: string;
  publication: string;
  /** Where streaming resumes (the checkpoint or the slot's consistent point): confirmed until more is applied. */
  startLsn: Lsn;
  /** Receives the decoded changes, synchronously, in the order of the stream. */
  sink: PgoutputSink;
  /**
   * The server's position in a keepalive: every message before it has been handed over. Returns true
   * when all of them are applied, so the position can be confirmed (the slot then advances even while
   * the published tables are quiet and other activity fills the WAL).
   */
  isIdle(): boolean;
  onError(err: unknown): void;
}

export class ReplicationConnection {
  private readonly client: pg.Client;
  private readonly decoder: PgoutputDecoder;
  private confirmed: Lsn;
  /** The position last sent in a status update. */
  private sent: Lsn = 0n;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private coalescer: ReadCoalescer | undefined;
  /** The newest XLogData message of the read being handled: its header has the server's send time. */
  private sentIn: Buffer | undefined;
  private sentAt = 0;

  constructor(private readonly options: ReplicationOptions) {
    // Answer keepalives from the start: an idle stream must not be dropped after wal_sender_timeout.
    this.confirmed = options.startLsn;
    this.decoder = new PgoutputDecoder(options.sink);
    this.client = new pg.Client({
      connectionString: options.url,
      replication: 'database',
    } as pg.ClientConfig);
    this.client.on('error', (err) => this.fail(err));
  }

  /** Connects and starts streaming from the slot's confirmed position. */
  async start(): Promise<void> {
    await this.client.connect();
    const connection = (this.client as unknown as { connection: Connection }).connection;
    this.takeOverCopyData(connection);
    const started = new Promise<void>((resolve) => connection.once('replicationStart', resolve));
    const options = [
      `proto_version '1'`,
      // The replication grammar knows plain '…' literals only (no E'…').
      `publication_names '${this.options.publication.replace(/'/g, "''")}'`,
      `messages 'true'`,
    ];
    const streaming = this.client.query(
      `START_REPLICATION SLOT ${quoteIdent(this.options.slotName)} LOGICAL 0/0 (${options.join(', ')})`,
    );
    streaming.catch((err: unknown) => this.fail(err));
    await Promise.race([started, streaming.then(() => undefined)]);
    this.timer = setInterval(() => this.sendStatus(), STATUS_INTERVAL_MS);
    this.timer.unref();
  }

  /** Everything up to `lsn` is durably applied: the server may recycle the WAL before it. */
  confirm(lsn: Lsn): void {
    if (lsn > this.confirmed) this.confirmed = lsn;
  }

  /** Sends the confirmed position now. */
  flush(): void {
    this.sendStatus();
  }

  pause(): void {
    if (this.coalescer) this.coalescer.hold();
    else this.connection()?.stream.pause();
  }

  resume(): void {
    if (this.coalescer) this.coalescer.release();
    else this.connection()?.stream.resume();
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.coalescer?.stop();
    this.sendStatus();
    await this.client.end().catch(() => {});
  }

  private connection(): Connection | undefined {
    return (this.client as unknown as { connection?: Connection }).connection;
  }

  /**
   * The socket's data goes through the framer first: CopyData to us, the rest to node-postgres's
   * parser (registered when it connected, idle between queries, so no message is cut in two).
   */
  private takeOverCopyData(connection: Connection): void {
    const socket = connection.stream;
    const parsers = socket.listeners('data') as ((chunk: Buffer) => void)[];
    socket.removeAllListeners('data');
    const framer = new CopyDataFramer(
      (chunk, start, end) => this.onCopyData(chunk, start, end),
      (bytes) => {
        for (const parse of parsers) parse(bytes);
      },
    );
    const coalescer = (this.coalescer = new ReadCoalescer(socket));
    socket.on('data', (chunk: Buffer) => {
      framer.push(chunk);
      const sent = this.sentIn;
      this.sentIn = undefined;
      if (sent === undefined || this.closed) return;
      coalescer.afterRead(chunk.length, pgTimestampMs(sent, this.sentAt) - this.decoder.commitTimeMs);
    });
  }

  private onCopyData(chunk: Buffer, start: number, end: number): void {
    if (this.closed) return;
    try {
      if (chunk[start] === 0x77 /* w: XLogData, after its 24-byte header */) {
        this.decoder.decode(chunk, start + 25, end);
        this.sentIn = chunk;
        this.sentAt = start + 17; // dataStart, walEnd, then the send time
      } else if (chunk[start] === 0x6b /* k: keepalive */) {
        const walEnd = chunk.readBigUInt64BE(start + 1);
        if (this.options.isIdle()) this.confirm(walEnd);
        // A reply is due when the server asks, and whenever the confirmed position moved.
        if (chunk[start + 17] === 1 || this.confirmed > this.sent) this.sendStatus();
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private sendStatus(): void {
    const connection = this.connection();
    if (!connection) return;
    this.sent = this.confirmed;
    const status = Buffer.alloc(34);
    status.write('r', 0);
    status.writeBigUInt64BE(this.confirmed, 1); // written
    status.writeBigUInt64BE(this.confirmed, 9); // flushed
    status.writeBigUInt64BE(this.confirmed, 17); // applied
    status.writeBigUInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25);
    status.writeUInt8(0, 33); // no reply requested
    try {
      connection.sendCopyFromChunk(status);
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.coalescer?.stop();
    void this.client.end().catch(() => {});
    this.options.onError(err);
  }
}
