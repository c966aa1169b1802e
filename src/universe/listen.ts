import type { AddressInfo, Server } from 'node:net';

/**
 * Starts `server` listening; resolves with the port it got (port 0: the kernel picks one) and the
 * base URL to reach it by, or rejects with the listen error (address in use, no permission).
 */
export async function listen(
  server: Server,
  port: number,
  host: string,
): Promise<{ port: number; url: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return { port: bound, url: `http://${httpHost(host)}:${bound}` };
}

/** A host as it goes in a URL: IPv6 in brackets; the wildcard address as loopback. */
export function httpHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
