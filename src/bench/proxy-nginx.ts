/**
 * nginx as the proxy benchmark runs it: `worker_processes auto` (one per core, as Imago's default),
 * upstream keep-alive, access log off, the forwarding headers Imago sets, everything under one
 * directory so that it needs no root and leaves nothing behind.
 */
import { join } from 'node:path';

export function nginxConfig(o: { dir: string; port: number; backendPort: number; logPath: string }): string {
  const { dir, port, backendPort, logPath } = o;
  return `worker_processes auto;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${logPath} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream backend { server 127.0.0.1:${backendPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }
  }
}
`;
}
