/**
 * The driver's journal: schema `imago_control` in the control database (by default the new
 * database). Why there: the old database is never written (isolation), and the new one already holds
 * the conversion checkpoint, so the switch decision and the data it relies on share one server — if
 * it is gone, no COMMIT can be recorded and the old universe keeps serving, which is the safe outcome.
 *
 * - `journal`: append-only (a trigger refuses UPDATE and DELETE); each event carries the phase the
 *   upgrade is in after it, so the current phase is the last row's. Only a start over of an aborted
 *   upgrade removes its rows (forget()).
 * - `commands`: what `imago switch|abort|finish` ask of the running driver (a queue, with results);
 *   a command expires when the CLI that issued it stops waiting, so it never runs later by surprise.
 * - `status`: the driver's heartbeat with live figures (copy progress, lag), overwritten each second.
 * One driver per upgrade: it holds a session advisory lock, released by the server if it dies.
 */
import pg from 'pg';
import { ImagoError, errorMessage } from '../errors.js';
import { redactUrl, redactValue } from '../redact.js';
import type { Phase } from './phases.js';

export interface JournalEvent {
  seq: number;
  at: string;
  phase: Phase;
  event: string;
  detail: Record<string, unknown>;
}

export interface Command {
  id: number;
  command: string;
  args: Record<string, unknown>;
}

const SCHEMA = `
CREATE SCHEMA IF NOT EXISTS imago_control;
CREATE TABLE IF NOT EXISTS imago_control.journal (
  seq bigserial PRIMARY KEY,
  upgrade text NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  phase text NOT NULL,
  event text NOT NULL,
  detail jsonb NOT NULL DEFAULT '{}'
);
CREATE OR REPLACE FUNCTION imago_control.append_only() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'imago_control.journal is append-only'; END $$;
DROP TRIGGER IF EXISTS append_only ON imago_control.journal;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON imago_control.journal
  FOR EACH ROW EXECUTE FUNCTION imago_control.append_only();
CREATE TABLE IF NOT EXISTS imago_control.commands (
  id bigserial PRIMARY KEY,
  upgrade text NOT NULL,
  command text NOT NULL,
  args jsonb NOT NULL DEFAULT '{}',
  issued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  taken_at timestamptz,
  done_at timestamptz,
  result jsonb
);
ALTER TABLE imago_control.commands ADD COLUMN IF NOT EXISTS expires_at timestamptz;
CREATE TABLE IF NOT EXISTS imago_control.status (
  upgrade text PRIMARY KEY,
  pid integer NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  figures jsonb NOT NULL DEFAULT '{}'
);`;

export class Journal {
  private constructor(
    private readonly client: pg.Client,
    readonly upgrade: string,
  ) {}

  /** Connects and creates the schema; `lock` makes this the upgrade's only driver. */
  static async open(url: string, upgrade: string, { lock = false } = {}): Promise<Journal> {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (err) {
      throw new ImagoError(
        `cannot connect to the control database: ${errorMessage(err)}`,
        redactUrl(url),
        'the journal lives in the new database unless the plan sets control.database',
      );
    }
    const journal = new Journal(client, upgrade);
    try {
      // Two drivers creating the schema at once would race on CREATE ... IF NOT EXISTS.
      await client.query('SELECT pg_advisory_lock(hashtext($1))', ['imago_control:schema']);
      await client.query(SCHEMA);
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', ['imago_control:schema']);
      if (lock && !(await journal.tryLock())) {
        throw new ImagoError(
          `another driver is running upgrade "${upgrade}"`,
          upgrade,
          'use `imago status`, `imago switch` or `imago abort` to talk to it',
        );
      }
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    return journal;
  }

  /** Takes the upgrade's lock for this session (held until close); false when a driver holds it. */
  async tryLock(): Promise<boolean> {
    const { rows } = await this.client.query<{ ok: boolean }>(
      'SELECT pg_try_advisory_lock(hashtext($1)) AS ok',
      [`imago:${this.upgrade}`],
    );
    return rows[0]?.ok === true;
  }

  /** True when some driver holds the upgrade's lock (checked by taking and giving it back). */
  async driverRunning(): Promise<boolean> {
    if (!(await this.tryLock())) return true;
    await this.client.query('SELECT pg_advisory_unlock(hashtext($1))', [`imago:${this.upgrade}`]);
    return false;
  }

  async append(phase: Phase, event: string, detail: Record<string, unknown> = {}): Promise<JournalEvent> {
    const { rows } = await this.client.query<JournalEvent>(
      `INSERT INTO imago_control.journal (upgrade, phase, event, detail) VALUES ($1, $2, $3, $4)
       RETURNING seq::int, at::text, phase, event, detail`,
      // Redacted at rest: details carry error messages, which may quote a row or an answer.
      [this.upgrade, phase, event, JSON.stringify(redactValue(detail), bigints)],
    );
    return rows[0] as JournalEvent;
  }

  /**
   * Removes every record of this upgrade — journal events, commands, heartbeat — for a start over
   * after an abort (`imago start --fresh`). The append-only trigger is off inside this transaction
   * only (no other session ever sees it off) and only this upgrade's rows are deleted. Returns how
   * many journal events were removed.
   */
  async forget(): Promise<number> {
    await this.client.query('BEGIN');
    try {
      await this.client.query('ALTER TABLE imago_control.journal DISABLE TRIGGER append_only');
      const { rowCount } = await this.client.query('DELETE FROM imago_control.journal WHERE upgrade = $1', [
        this.upgrade,
      ]);
      await this.client.query('ALTER TABLE imago_control.journal ENABLE TRIGGER append_only');
      await this.client.query('DELETE FROM imago_control.commands WHERE upgrade = $1', [this.upgrade]);
      await this.client.query('DELETE FROM imago_control.status WHERE upgrade = $1', [this.upgrade]);
      await this.client.query('COMMIT');
      return rowCount ?? 0;
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  async events(limit?: number): Promise<JournalEvent[]> {
    const { rows } = await this.client.query<JournalEvent>(
      `SELECT * FROM (SELECT seq::int, at::text, phase, event, detail FROM imago_control.journal
        WHERE upgrade = $1 ORDER BY seq DESC ${limit ? `LIMIT ${Math.floor(limit)}` : ''}) e ORDER BY seq`,
      [this.upgrade],
    );
    return rows;
  }

  async heartbeat(figures: Record<string, unknown>): Promise<void> {
    await this.client.query(
      `INSERT INTO imago_control.status (upgrade, pid, figures) VALUES ($1, $2, $3)
       ON CONFLICT (upgrade) DO UPDATE SET pid = EXCLUDED.pid, figures = EXCLUDED.figures, updated_at = clock_timestamp()`,
      [this.upgrade, process.pid, JSON.stringify(figures, bigints)],
    );
  }

  async status(): Promise<
    { pid: number; updatedAt: string; ageMs: number; figures: Record<string, unknown> } | undefined
  > {
    const { rows } = await this.client.query<{
      pid: number;
      updated_at: string;
      age_ms: number;
      figures: Record<string, unknown>;
    }>(
      `SELECT pid, updated_at::text, (extract(epoch FROM clock_timestamp() - updated_at) * 1000)::int AS age_ms, figures
         FROM imago_control.status WHERE upgrade = $1`,
      [this.upgrade],
    );
    const r = rows[0];
    return r && { pid: r.pid, updatedAt: r.updated_at, ageMs: r.age_ms, figures: r.figures };
  }

  /**
   * Queues a command for the running driver and wakes it. With `ttlMs`, a driver that has not taken
   * it by then drops it (the CLI stopped waiting: running it later would surprise everyone).
   */
  async issue(command: string, args: Record<string, unknown> = {}, ttlMs?: number): Promise<number> {
    const { rows } = await this.client.query<{ id: number }>(
      `INSERT INTO imago_control.commands (upgrade, command, args, expires_at)
       VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4::float8 / 1000)) RETURNING id::int`,
      [this.upgrade, command, JSON.stringify(args), ttlMs ?? null],
    );
    await this.client.query(`SELECT pg_notify('imago_control', $1)`, [this.upgrade]);
    return rows[0]?.id ?? 0;
  }

  /** The oldest command not yet taken and not expired, marked taken; expired ones are closed first. */
  async take(): Promise<Command | undefined> {
    await this.dropExpired();
    const { rows } = await this.client.query<Command>(
      `UPDATE imago_control.commands SET taken_at = clock_timestamp()
        WHERE id = (SELECT id FROM imago_control.commands WHERE upgrade = $1 AND taken_at IS NULL ORDER BY id LIMIT 1)
        RETURNING id::int, command, args`,
      [this.upgrade],
    );
    return rows[0];
  }

  /** Closes the commands nobody waits for any more, with an `expired` result. */
  async dropExpired(): Promise<number> {
    const { rowCount } = await this.client.query(
      `UPDATE imago_control.commands
          SET taken_at = clock_timestamp(), done_at = clock_timestamp(),
              result = jsonb_build_object('ok', false, 'error', 'expired: the command was not taken before its issuer stopped waiting')
        WHERE upgrade = $1 AND taken_at IS NULL AND expires_at IS NOT NULL AND expires_at <= clock_timestamp()`,
      [this.upgrade],
    );
    return rowCount ?? 0;
  }

  async complete(id: number, result: Record<string, unknown>): Promise<void> {
    await this.client.query(
      'UPDATE imago_control.commands SET done_at = clock_timestamp(), result = $2 WHERE id = $1',
      [id, JSON.stringify(result, bigints)],
    );
    await this.client.query(`SELECT pg_notify('imago_control_done', $1)`, [String(id)]);
  }

  async result(id: number): Promise<Record<string, unknown> | undefined> {
    const { rows } = await this.client.query<{ result: Record<string, unknown> | null }>(
      'SELECT result FROM imago_control.commands WHERE id = $1 AND done_at IS NOT NULL',
      [id],
    );
    return rows[0]?.result ?? undefined;
  }

  /** Calls `wake` on every notification on `channel` (commands issued, commands done). */
  async listen(
    channel: 'imago_control' | 'imago_control_done',
    wake: (payload: string) => void,
  ): Promise<void> {
    this.client.on('notification', (n) => {
      if (n.channel === channel) wake(n.payload ?? '');
    });
    await this.client.query(`LISTEN ${channel}`);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
