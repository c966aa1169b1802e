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

/**
 * Whether the nodes may still be sent back to the old universe: before the switch, or while
 * aborting (which sorts after `switched` but is only ever entered before a COMMIT).
 */
export function beforeCommit(phase: Phase): boolean {
  return before(phase, 'switching') || phase === 'aborting';
}

/**
 * Whether the journal may move from `from` to `to`. Phases only move forward, except the defined
 * moves back: a switch aborted before COMMIT (switching → ready), an abort before the switch
 * (→ aborting → aborted), and a copy started over while nothing serves the new universe yet
 * (streaming/testing → copying, when the slot was lost). After COMMIT (`committed`) nothing goes back.
 */
export function phaseMoveAllowed(from: Phase | undefined, to: Phase, committed: boolean): boolean {
  if (from === undefined) return to === 'planned';
  if (from === to) return true;
  if (isTerminal(from)) return false;
  if (to === 'aborting') return !committed && before(from, 'switched');
  if (from === 'aborting') return to === 'aborted';
  if (to === 'aborted') return false;
  if (from === 'switching' && to === 'ready') return !committed;
  if (to === 'copying' && (from === 'streaming' || from === 'testing')) return true;
  return PHASES.indexOf(to) > PHASES.indexOf(from);
}
