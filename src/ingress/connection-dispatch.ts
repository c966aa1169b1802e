/**
 * The primary's listening socket for a multi-process ingress: it accepts each client connection and
 * hands it to one worker at a time, round-robin among the workers that have no hand-off in flight
 * (a busy worker takes fewer), as node:cluster's round-robin scheduler does — except that a
 * connection stays the primary's until its worker says it has it. node:cluster's scheduler loses a
 * connection handed to a worker that died before the primary noticed (its acknowledgement never
 * comes, the connection is never served nor closed: the client hangs); here such a connection goes
 * to the next worker, so a crashed worker costs only the connections it had adopted.
 */
import net from 'node:net';
import { listen } from '../universe/listen.js';

/** A worker as the dispatcher sees it. */
export interface ConnectionTaker {
  /**
   * Sends the connection (the caller keeps its own copy open); `settled(true)` once the taker has it,
   * `settled(false)` if it never will (it refused, or it is gone). Called exactly once.
   */
  take(socket: net.Socket, settled: (taken: boolean) => void): void;
}

export class ConnectionDispatcher {
  private readonly server: net.Server;
  private readonly takers = new Set<ConnectionTaker>();
  /** Takers with no hand-off in flight, in the order they became free. */
  private free: ConnectionTaker[] = [];
  /** Accepted connections no taker has yet, oldest first. */
  private waiting: net.Socket[] = [];
  private closed = false;

  constructor() {
    // Paused: nothing is read here, so whatever the client sent is read by the worker that serves it.
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => {
      // A client that resets while its connection waits here must not crash the primary.
      socket.on('error', () => socket.destroy());
      this.waiting.push(socket);
      this.pump();
    });
  }

  listen(port: number, host: string): Promise<{ port: number; url: string }> {
    return listen(this.server, port, host);
  }

  /** A worker ready to serve. */
  add(taker: ConnectionTaker): void {
    if (this.closed || this.takers.has(taker)) return;
    this.takers.add(taker);
    this.free.push(taker);
    this.pump();
  }

  /** A worker gone (or going): it gets nothing more; what it had not taken goes to the others. */
  remove(taker: ConnectionTaker): void {
    this.takers.delete(taker);
    this.free = this.free.filter((t) => t !== taker);
  }

  /** Accepted connections not yet taken by a worker. */
  pending(): number {
    return this.waiting.length;
  }

  /** Stops accepting; connections no worker has taken are closed. */
  close(): Promise<void> {
    this.closed = true;
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.waiting) s.destroy();
    this.waiting = [];
    return stopped;
  }

  private pump(): void {
    while (this.free.length > 0 && this.waiting.length > 0) {
      const socket = this.waiting.shift() as net.Socket;
      // The client left while it waited.
      if (socket.destroyed) continue;
      const taker = this.free.shift() as ConnectionTaker;
      let done = false;
      taker.take(socket, (taken) => {
        if (done) return;
        done = true;
        if (taken || this.closed) {
          // The worker holds its own descriptor of the connection: closing ours leaves it open.
          socket.destroy();
        } else {
          // Not taken: first in line for the next worker, ahead of later arrivals.
          this.waiting.unshift(socket);
        }
        // A taker that refused or is gone is not given another.
        if (taken && this.takers.has(taker)) this.free.push(taker);
        this.pump();
      });
    }
  }
}
