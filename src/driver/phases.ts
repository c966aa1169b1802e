/**
 * The upgrade's phases, in order, and which phase each protocol event of the switch leads to. The
 * phase is stored with every journal event, so resuming needs no replay logic beyond the last row.
 */
export const PHASES = [
  'planned',
  'provisioning',
  'copying',
  'streaming',
  'testing',
  'ready',
  'switching',
  'switched',
  'finished',
  'aborting',
  'aborted',
] as const;

export type Phase = (typeof PHASES)[number];

/** The phase after each event the switchover protocol journals. */
export const SWITCH_EVENT_PHASE: Record<string, Phase> = {
  'switch-refused': 'ready',
  'switch-prepare': 'switching',
  'switch-commit': 'switching',
  'switch-abort': 'switching',
  'switch-aborted': 'ready',
  switched: 'switched',
};

export function isTerminal(phase: Phase | undefined): boolean {
  return phase === 'finished' || phase === 'aborted';
}

/** True when `phase` comes before `other` on the way to `ready`. */
export function before(phase: Phase, other: Phase): boolean {
  return PHASES.indexOf(phase) < PHASES.indexOf(other);
}
