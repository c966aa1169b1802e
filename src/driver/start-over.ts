/**
 * `imago start <plan> --fresh`: begins an aborted upgrade again. What its attempt left and a new one
 * would trip over is listed first (for the user to confirm), then removed with the abort's own
 * clean-up functions:
 * - on the old database, the slot and publication if the abort could not drop them (dropCapture);
 *   the application's data is never touched;
 * - in the new database, what the conversion wrote — the target tables' rows, the lineage and the
 *   checkpoint (resetTargets, as an interrupted copy starts over), with indexes a killed copy deferred
 *   built again (restoreDeferred) — because a new copy expects empty targets;
 * - in the control database, the upgrade's journal, commands and heartbeat (Journal.forget), last: a
 *   start over interrupted half-way is still an aborted upgrade, and can be started over again.
 * Only an aborted upgrade is started over. A live one (any other phase before `finished`) is refused,
 * and so is one a driver holds (its advisory lock): neither is ever destroyed. A finished one is
 * refused too: its new database is the one serving the clients, and a start over would empty it.
 */
import type pg from 'pg';
import { connectClient } from '../database.js';
import { ImagoError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { dropCapture } from '../capture/drop.js';
import { publicationName, slotName } from '../capture/names.js';
import { slotExists } from '../capture/slot.js';
import { deferredTables, restoreDeferred } from '../conversion/deferred-indexes.js';
import { readCheckpoint, resetTargets } from '../conversion/state.js';
import type { UpgradePlan } from '../plan/index.js';
import type { Databases } from './databases.js';
import { Journal } from './journal.js';
import { beforeCommit, type Phase } from './phases.js';

/** One thing a start over removes (or rebuilds), and where: the server's URL without its password. */
export interface Removal {
  database: 'old' | 'new' | 'control';
  server: string;
  what: string;
}

/** What a start over found: the attempt it ends (none: never started) and what it removes. */
export interface StartOverPlan {
  upgrade: string;
  previous?: { phase: Phase; at: string };
  removals: Removal[];
}

export class StartOver {
  private constructor(
    private readonly journal: Journal,
    private readonly dbs: Databases,
    readonly plan: StartOverPlan,
    private readonly found: { capture: boolean; state: boolean },
  ) {}

  /**
   * Checks that the upgrade may be started over and lists what that removes; holds the upgrade's
   * lock until close(), so that no driver starts meanwhile. `planFile` names the plan in hints.
   */
  static async open(plan: UpgradePlan, dbs: Databases, planFile: string): Promise<StartOver> {
    const journal = await Journal.open(dbs.control, plan.name);
    try {
      const last = (await journal.events(1)).at(-1);
      if (!last) return new StartOver(journal, dbs, { upgrade: plan.name, removals: [] }, noState);
      refuseUnlessAborted(plan.name, last.phase, last.at, planFile);
      if (!(await journal.tryLock())) {
        const beat = await journal.status();
        throw new ImagoError(
          `a driver is running upgrade ${plan.name} (it holds the upgrade's lock${beat ? `; last heartbeat from pid ${beat.pid}, ${Math.round(beat.ageMs / 1000)} s ago` : ''}): it is not started over`,
          plan.name,
          `let it exit or stop it, then run imago start ${planFile} --fresh again; imago status ${planFile} shows it`,
        );
      }
      const events = (await journal.events()).length;
      const old = await oldLeftovers(dbs.old, plan.name);
      const state = await newLeftovers(dbs.new, plan.name);
      const removals: Removal[] = [
        ...old.map((what) => ({ database: 'old' as const, server: redactUrl(dbs.old), what })),
        ...state.map((what) => ({ database: 'new' as const, server: redactUrl(dbs.new), what })),
        {
          database: 'control',
          server: redactUrl(dbs.control),
          what: `the journal of ${plan.name} (${events} events), its commands and heartbeat (schema imago_control)`,
        },
      ];
      return new StartOver(
        journal,
        dbs,
        { upgrade: plan.name, previous: { phase: last.phase, at: last.at }, removals },
        { capture: old.length > 0, state: state.length > 0 },
      );
    } catch (err) {
      await journal.close();
      throw err;
    }
  }

  /** Removes what open() listed; the journal last. */
  async carryOut(): Promise<void> {
    if (!this.plan.previous) return;
    if (this.found.capture) await dropCapture(this.dbs.old, this.plan.upgrade);
    if (this.found.state) {
      const client = await connectClient(this.dbs.new, 'new');
      try {
        await resetTargets(client, this.plan.upgrade);
      } finally {
        await client.end().catch(() => {});
      }
      await restoreDeferred(this.dbs.new);
    }
    await this.journal.forget();
  }

  async close(): Promise<void> {
    await this.journal.close();
  }
}

const noState = { capture: false, state: false };

/** Throws unless the journal's last phase is `aborted` (see the file's comment for why). */
function refuseUnlessAborted(upgrade: string, phase: Phase, at: string, planFile: string): void {
  if (phase === 'aborted') return;
  if (phase === 'finished')
    throw new ImagoError(
      `upgrade ${upgrade} finished at ${at}: its new database serves the clients, and starting over would empty it`,
      upgrade,
      'a next upgrade is a new plan, under another name, whose old universe is this one’s new universe',
    );
  throw new ImagoError(
    `upgrade ${upgrade} is live (phase ${phase} since ${at}): --fresh never removes a live upgrade`,
    upgrade,
    beforeCommit(phase)
      ? `imago abort ${planFile} first, then imago start ${planFile} --fresh`
      : `a COMMIT stands: the new universe serves; imago finish ${planFile} completes the upgrade`,
  );
}

/** The upgrade's slot and publication still on the old database. */
async function oldLeftovers(url: string, upgrade: string): Promise<string[]> {
  const client = await connectClient(url, 'old');
  try {
    const found: string[] = [];
    if (await slotExists(client, slotName(upgrade))) found.push(`replication slot ${slotName(upgrade)}`);
    const pub = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [
      publicationName(upgrade),
    ]);
    if ((pub.rowCount ?? 0) > 0) found.push(`publication ${publicationName(upgrade)}`);
    return found;
  } finally {
    await client.end().catch(() => {});
  }
}

/** What the conversion wrote into the new database (schema imago and the target tables it lists). */
async function newLeftovers(url: string, upgrade: string): Promise<string[]> {
  const client = await connectClient(url, 'new');
  try {
    if (!(await stateSchemaExists(client))) return [];
    const { rows } = await client.query<{ name: string }>('SELECT name FROM imago.targets ORDER BY name');
    const checkpoint = await readCheckpoint(client, upgrade);
    const deferred = await deferredTables(client);
    return [
      ...(rows.length > 0
        ? [`every row of the converted tables ${rows.map((r) => r.name).join(', ')} (emptied)`]
        : []),
      `the lineage${checkpoint ? ` and the checkpoint of ${upgrade}` : ''} (schema imago)`,
      ...(deferred.length > 0 ? [`deferred indexes of ${deferred.join(', ')} (built again)`] : []),
    ];
  } finally {
    await client.end().catch(() => {});
  }
}

async function stateSchemaExists(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT to_regclass('imago.targets') IS NOT NULL AND to_regclass('imago.checkpoint') IS NOT NULL AS ok`,
  );
  return rows[0]?.ok === true;
}
