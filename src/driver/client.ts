/**
 * What the CLI's `status`, `switch`, `abort` and `finish` do: read the journal, or queue a command
 * for the running driver and wait (with a deadline) for its result, following the journal meanwhile.
 */
import { ImagoError } from '../errors.js';
import { withDeadline } from '../deadline.js';
import type { UpgradePlan } from '../plan/index.js';
import { knownDatabases } from './databases.js';
import { Journal, type JournalEvent } from './journal.js';
import type { Phase } from './phases.js';

export interface UpgradeStatus {
  name: string;
  phase: Phase | 'not started';
  driverRunning: boolean;
  /** The driver's last heartbeat: conversion figures (copied rows, applied LSN, lag), late writes. */
  figures?: Record<string, unknown>;
  heartbeatAgeMs?: number;
  lateWrites: number;
  lastSwitch?: { event: string; at: string; detail: Record<string, unknown> };
  journal: JournalEvent[];
}

export async function upgradeStatus(plan: UpgradePlan, tail = 10): Promise<UpgradeStatus> {
  const journal = await Journal.open(knownDatabases(plan).control, plan.name);
  try {
    const events = await journal.events();
    const status = await journal.status();
    const lastSwitch = events.findLast((e) => e.event.startsWith('switch'));
    return {
      name: plan.name,
      phase: events.at(-1)?.phase ?? 'not started',
      driverRunning: await journal.driverRunning(),
      figures: status?.figures,
      heartbeatAgeMs: status?.ageMs,
      lateWrites: events.filter((e) => e.event === 'late-write').length,
      ...(lastSwitch
        ? { lastSwitch: { event: lastSwitch.event, at: lastSwitch.at, detail: lastSwitch.detail } }
        : {}),
      journal: events.slice(-tail),
    };
  } finally {
    await journal.close();
  }
}

/** `sendCommand` found no driver running the upgrade (its heartbeat is stale or absent). */
export class NoDriverError extends ImagoError {
  constructor(upgrade: string) {
    super(
      `no driver is running upgrade "${upgrade}"`,
      upgrade,
      'start it with `imago start <plan>`; it resumes from the journal',
    );
    this.name = 'NoDriverError';
  }
}

/** Queues `command` for the running driver and returns its result; journal events are passed to `onEvent`. */
export async function sendCommand(
  plan: UpgradePlan,
  command: 'switch' | 'abort' | 'finish',
  {
    timeoutMs,
    onEvent,
    args = {},
  }: { timeoutMs: number; onEvent?: (e: JournalEvent) => void; args?: Record<string, unknown> },
): Promise<Record<string, unknown>> {
  const journal = await Journal.open(knownDatabases(plan).control, plan.name);
  try {
    if (!(await journal.driverRunning())) throw new NoDriverError(plan.name);
    let seen = (await journal.events(1)).at(-1)?.seq ?? 0;
    let wake: () => void = () => {};
    await journal.listen('imago_control_done', () => wake());
    // Expires with our wait: a driver started later must not run a switch nobody is watching.
    const id = await journal.issue(command, args, timeoutMs);
    const done = (async () => {
      for (;;) {
        for (const e of await journal.events(50)) {
          if (e.seq > seen) {
            seen = e.seq;
            onEvent?.(e);
          }
        }
        const result = await journal.result(id);
        if (result) return result;
        // Woken when a command completes; the short timer also shows journal progress meanwhile.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 200);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();
    return await withDeadline(
      `the driver answering "${command}"`,
      done,
      timeoutMs,
      'see `imago status`; unless the driver had taken it, the command expired with this wait and will not run later',
    );
  } finally {
    await journal.close();
  }
}
