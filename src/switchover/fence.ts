/**
 * Write fencing of the database being left during a switch — the old one on the way forward, the new
 * one on a rollback (docs/rollback.md) — so that nothing its app does after the drain can commit
 * unseen:
 * - `revoke`: REVOKE INSERT, UPDATE, DELETE (and TRUNCATE) on the converted tables from the app role,
 *   restoring exactly the privileges it held directly on abort;
 * - `read-only`: the role's sessions in this database default to read-only, and its open sessions
 *   are ended (a session keeps the setting it started with);
 * - `none`: nothing (writes after the fence are only detected, as late writes).
 * What lifting needs is computed first (`plan`) so the driver can journal it before applying:
 * a driver killed between the two still knows what to restore.
 */
import pg from 'pg';
import { ImagoError, errorMessage } from '../errors.js';
import type { FencingMode } from '../plan/index.js';
import { redactUrl } from '../redact.js';
import { parseLsn } from '../capture/lsn.js';
import { missingTableHint } from '../catalog.js';
import { parseTableName, quoteIdent, quoteLiteral, quoteQualified, tableKey, tableLabel } from '../sql.js';

const WRITE_PRIVILEGES = ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'] as const;

export interface FenceRecord {
  mode: FencingMode;
  role?: string;
  /** revoke: the write privileges the role held directly, per table. */
  grants?: { table: string; privileges: string[] }[];
  /** read-only: the role's previous per-database default_transaction_read_only, if any. */
  previous?: string | null;
}

/** How long a connection opened ahead of the switch waits to be used before it is closed. */
const STANDBY_IDLE_MS = 60_000;

export class Fence {
  /** A connection opened before the pause, so that the fence does not pay for a connect inside it. */
  private standby: { client: pg.Client; timer: NodeJS.Timeout } | undefined;

  constructor(
    private readonly databaseUrl: string,
    readonly mode: FencingMode,
    private readonly role: string | undefined,
    private readonly tables: string[],
    /** Which universe's database this is, for messages: the old one, unless a rollback fences new. */
    private readonly database: 'old' | 'new' = 'old',
  ) {}

  /** Checks the fence can work and returns what lifting it must restore. */
  async plan(): Promise<FenceRecord> {
    if (this.mode === 'none') return { mode: 'none' };
    const role = this.role ?? '';
    return this.withClient(5_000, async (c) => {
      const { rows } = await c.query<{ superuser: boolean; me: string }>(
        'SELECT rolsuper AS superuser, current_user AS me FROM pg_roles WHERE rolname = $1',
        [role],
      );
      const r = rows[0];
      if (!r)
        throw new ImagoError(`fencing role "${role}" does not exist in the ${this.database} database`, role);
      if (r.me === role)
        throw new ImagoError(
          `fencing role "${role}" is the role Imago connects to the ${this.database} database with`,
          role,
          'give the app its own role, or connect Imago with an administrative role',
        );
      if (this.mode === 'revoke') {
        if (r.superuser)
          throw new ImagoError(
            `fencing role "${role}" is a superuser: REVOKE cannot stop its writes`,
            role,
            'run the app with a non-superuser role, or use fencing mode read-only',
          );
        const grants: FenceRecord['grants'] = [];
        for (const spelling of this.tables) {
          const table = tableKey(spelling, "the conversion's tables");
          const { rows: found } = await c.query<{ found: boolean }>(
            'SELECT to_regclass($1) IS NOT NULL AS found',
            [quoteQualified(table)],
          );
          if (!found[0]?.found)
            throw new ImagoError(
              `table ${tableLabel(table)} does not exist in the ${this.database} database, so revoke fencing cannot fence it`,
              table,
              await missingTableHint(c, parseTableName(table), "check the conversion's tables"),
            );
          const { rows: privs } = await c.query<{ p: string }>(
            // A table never granted on has a NULL ACL: its owner's privileges are the default ones.
            `SELECT a.privilege_type AS p FROM pg_class k, aclexplode(coalesce(k.relacl, acldefault('r', k.relowner))) a
              WHERE k.oid = $1::regclass AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $2)
                AND a.privilege_type = ANY($3)`,
            [quoteQualified(table), role, WRITE_PRIVILEGES],
          );
          grants.push({ table, privileges: privs.map((p) => p.p) });
        }
        return { mode: 'revoke', role, grants };
      }
      const { rows: settings } = await c.query<{ v: string | null }>(
        `SELECT (SELECT s FROM unnest(setconfig) s WHERE s LIKE 'default_transaction_read_only=%') AS v
           FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND setrole = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
        [role],
      );
      return { mode: 'read-only', role, previous: settings[0]?.v?.split('=')[1] ?? null };
    });
  }

  /**
   * Stops the role's writes and returns the fence LSN: the database's WAL position once the fence
   * is in force. Whatever commits after it is a late write. Fails (and the switch aborts) if it cannot
   * within `timeoutMs`.
   */
  async apply(record: FenceRecord, timeoutMs: number): Promise<bigint> {
    const role = quoteIdent(record.role ?? '');
    return this.withClient(timeoutMs, async (c) => {
      await this.fenceRole(c, record, role);
      const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      return parseLsn(rows[0]?.lsn ?? '0/0');
    });
  }

  private async fenceRole(c: pg.Client, record: FenceRecord, role: string): Promise<void> {
    if (record.mode === 'none' || !record.role) return;
    {
      if (record.mode === 'revoke') {
        await c.query('BEGIN');
        for (const { table } of record.grants ?? [])
          await c.query(
            `REVOKE ${WRITE_PRIVILEGES.join(', ')} ON TABLE ${quoteQualified(table)} FROM ${role}`,
          );
        await c.query('COMMIT');
        // A privilege that comes through PUBLIC or another role is not removed by the REVOKE.
        for (const { table } of record.grants ?? []) {
          const { rows } = await c.query<{ w: boolean }>(
            `SELECT has_table_privilege($1, $2::regclass, 'INSERT') OR has_table_privilege($1, $2::regclass, 'UPDATE')
                 OR has_table_privilege($1, $2::regclass, 'DELETE') AS w`,
            [record.role, quoteQualified(table)],
          );
          if (rows[0]?.w)
            throw new ImagoError(
              `role "${record.role}" can still write ${table} after the REVOKE (through PUBLIC or a role it belongs to)`,
              table,
              'revoke those grants, or use fencing mode read-only',
            );
        }
      } else {
        const db = quoteIdent(await currentDatabase(c));
        await c.query(`ALTER ROLE ${role} IN DATABASE ${db} SET default_transaction_read_only = on`);
        await c.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE usename = $1 AND datname = current_database() AND pid <> pg_backend_pid()`,
          [record.role],
        );
      }
    }
  }

  /** Gives the role back what `plan` recorded; idempotent (abort and crash recovery may both call it). */
  async lift(record: FenceRecord, timeoutMs = 10_000): Promise<void> {
    if (record.mode === 'none' || !record.role) return;
    const role = quoteIdent(record.role);
    await this.withClient(timeoutMs, async (c) => {
      if (record.mode === 'revoke') {
        for (const { table, privileges } of record.grants ?? [])
          if (privileges.length > 0)
            await c.query(`GRANT ${privileges.join(', ')} ON TABLE ${quoteQualified(table)} TO ${role}`);
      } else {
        const db = quoteIdent(await currentDatabase(c));
        if (record.previous)
          await c.query(
            `ALTER ROLE ${role} IN DATABASE ${db} SET default_transaction_read_only = ${quoteLiteral(record.previous)}`,
          );
        else await c.query(`ALTER ROLE ${role} IN DATABASE ${db} RESET default_transaction_read_only`);
      }
    });
  }

  /**
   * Opens the connection the next fence or lift will use, ahead of time (before anything is held):
   * a connect with its authentication costs tens of milliseconds on a busy server. Best effort: if it
   * fails, or is not used within a minute, the fence connects when it runs.
   */
  async standBy(timeoutMs: number): Promise<void> {
    this.dropStandby();
    const client = this.newClient(timeoutMs);
    try {
      await client.connect();
    } catch {
      return;
    }
    const timer = setTimeout(() => this.dropStandby(), STANDBY_IDLE_MS);
    timer.unref();
    this.standby = { client, timer };
    // A connection the server ended meanwhile is not handed to the fence.
    client.once('end', () => {
      if (this.standby?.client !== client) return;
      clearTimeout(timer);
      this.standby = undefined;
    });
  }

  private dropStandby(): void {
    if (!this.standby) return;
    clearTimeout(this.standby.timer);
    void this.standby.client.end().catch(() => {});
    this.standby = undefined;
  }

  private newClient(timeoutMs: number): pg.Client {
    const client = new pg.Client({
      connectionString: this.databaseUrl,
      connectionTimeoutMillis: Math.max(1, Math.ceil(timeoutMs)),
    });
    client.on('error', () => {});
    return client;
  }

  private async withClient<T>(timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const ready = this.standby;
    if (ready) {
      clearTimeout(ready.timer);
      this.standby = undefined;
    }
    const client = ready?.client ?? this.newClient(timeoutMs);
    try {
      if (!ready) await client.connect();
    } catch (err) {
      throw new ImagoError(
        `cannot connect to the ${this.database} database to fence it: ${errorMessage(err)}`,
        redactUrl(this.databaseUrl),
      );
    }
    try {
      // A hidden writer holding a lock must not stretch the pause past the fence deadline.
      const ms = Math.max(1, Math.ceil(timeoutMs));
      await client.query(`SET lock_timeout = ${ms}; SET statement_timeout = ${ms}`);
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }
}

async function currentDatabase(c: pg.Client): Promise<string> {
  const { rows } = await c.query<{ d: string }>('SELECT current_database() AS d');
  return rows[0]?.d ?? '';
}
