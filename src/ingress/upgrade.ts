/**
 * Upgrade (WebSocket) passthrough. The handshake is forwarded to a backend of the universe in force
 * and, on 101, the two sockets are spliced. An upgraded connection then belongs to the universe that
 * accepted it for its whole life: a flip does not move it (a WebSocket carries state the other
 * universe does not have) and it is not counted by drain tracking, which is about HTTP requests.
 * Uses node:http rather than undici here because it hands over non-101 answers as ordinary responses.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Backend } from './backends.js';
import type { ClientRequest } from './client-request.js';
import { upstreamRequestHeaders } from './headers.js';

export interface UpgradeTimeouts {
  connectMs: number;
}

/** Writes a complete minimal HTTP response on a raw socket and closes it. */
export function refuseUpgrade(socket: Duplex, status: number, text: string, extra = ''): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  endAndClose(socket, `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n${extra}\r\n`);
}

/**
 * Ends the client socket with a last answer and closes it once that is written: the socket is paused
 * (nothing reads it until a tunnel is spliced), so the client's own close would never be seen.
 */
function endAndClose(socket: Duplex, last: string | Buffer): void {
  socket.end(last, () => socket.destroy());
}

export function forwardUpgrade(
  req: ClientRequest,
  socket: Duplex,
  head: Buffer,
  backend: Backend,
  timeouts: UpgradeTimeouts,
  onOpen: (open: boolean) => void,
): void {
  const target = new URL(backend.url);
  // Upgrade and Connection are hop-by-hop in general but are the handshake itself here.
  const headers = upstreamRequestHeaders(req.rawHeaders, { clientIp: req.remoteAddress, proto: 'http' });
  headers.push('host', target.host, 'connection', 'upgrade', 'upgrade', req.upgrade ?? 'websocket');
  const upstream = http.request({
    host: target.hostname,
    port: target.port,
    method: req.method,
    path: backend.prefix + req.url,
    headers,
    timeout: timeouts.connectMs,
  });
  let settled = false;
  const settle = (open: boolean): void => {
    if (settled) return;
    settled = true;
    onOpen(open);
  };
  socket.on('error', () => upstream.destroy());
  // The client socket cut before the backend answered (client gone, shutdown): the handshake is dropped.
  socket.once('close', () => {
    if (!settled) upstream.destroy();
  });
  upstream.on('timeout', () => {
    upstream.destroy();
    refuseUpgrade(socket, 504, 'Gateway Timeout');
    settle(false);
  });
  upstream.on('error', () => {
    refuseUpgrade(socket, 502, 'Bad Gateway');
    settle(false);
  });
  upstream.on('response', (res) => {
    // The backend declined the upgrade: relay its answer as is, then close.
    const lines = [`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}`];
    for (let i = 0; i < res.rawHeaders.length; i += 2) {
      const name = (res.rawHeaders[i] as string).toLowerCase();
      if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive') continue;
      lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
    }
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      const body = Buffer.concat(chunks);
      if (res.headers['content-length'] === undefined) lines.push(`content-length: ${body.length}`);
      endAndClose(
        socket,
        Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\nconnection: close\r\n\r\n`, 'latin1'), body]),
      );
      settle(false);
    });
  });
  upstream.on('upgrade', (res, upSocket, upHead) => {
    upstream.setTimeout(0);
    const lines = [`HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}`];
    for (let i = 0; i < res.rawHeaders.length; i += 2)
      lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    upSocket.on('error', () => socket.destroy());
    socket.on('error', () => upSocket.destroy());
    upSocket.on('close', () => socket.destroy());
    socket.on('close', () => upSocket.destroy());
    upSocket.pipe(socket);
    socket.pipe(upSocket);
    settle(true);
  });
  upstream.end();
}
