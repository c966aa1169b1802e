/**
 * The ingress's listening side: a net.Server whose connections are parsed by client-connection.ts, and
 * one ticker enforcing every connection's deadlines (headers, whole request, idle keep-alive, send) instead of
 * a timer per connection or request. The ticker runs every fourth of the headers timeout, between 10 ms
 * and 1 s, so a deadline fires up to that much late.
 */
import net from 'node:net';
import { listen } from '../universe/listen.js';
import {
  ClientConnection,
  type ConnectionOwner,
  type FrontEndLimits,
  type RequestHandlers,
} from './client-connection.js';

export class FrontEnd implements ConnectionOwner {
  private readonly server: net.Server;
  private readonly connections = new Set<ClientConnection>();
  private readonly ticker: NodeJS.Timeout;

  constructor(
    readonly limits: FrontEndLimits,
    readonly handlers: RequestHandlers,
  ) {
    this.server = net.createServer({ noDelay: true }, (socket) => {
      this.connections.add(new ClientConnection(socket, this));
    });
    const tickMs = Math.max(10, Math.min(1_000, Math.floor(limits.headersMs / 4)));
    this.ticker = setInterval(() => this.checkDeadlines(), tickMs);
    this.ticker.unref();
  }

  /** A connection accepted by another process (a cluster primary), served as if accepted here. */
  adopt(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.connections.add(new ClientConnection(socket, this));
  }

  forget(conn: ClientConnection): void {
    this.connections.delete(conn);
  }

  /** Resolves with the port bound (0: the kernel picks one) and the URL clients use. */
  listen(port: number, host: string): Promise<{ port: number; url: string }> {
    return listen(this.server, port, host);
  }

  /** Stops listening and cuts every client connection (upgraded ones belong to the router). */
  close(): Promise<void> {
    clearInterval(this.ticker);
    // Resolves whether it listened or not (a cluster worker's front end adopts, never listens).
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of [...this.connections]) conn.destroy();
    return closed;
  }

  private checkDeadlines(): void {
    const now = performance.now();
    for (const conn of this.connections) {
      if (conn.deadline <= now || conn.sendDeadline <= now) conn.checkDeadline(now);
    }
  }
}
