/** A journal kept in memory, for one-shot switches (the demo, the benches) that have no driver. */
import type { SwitchJournal } from './protocol.js';

export function memoryJournal(): SwitchJournal & {
  events: { event: string; detail: Record<string, unknown> }[];
} {
  const events: { event: string; detail: Record<string, unknown> }[] = [];
  return {
    events,
    record: (event, detail = {}) => {
      events.push({ event, detail });
      return Promise.resolve();
    },
    committed: (epoch) =>
      Promise.resolve(events.some((e) => e.event === 'switch-commit' && e.detail.epoch === epoch)),
  };
}
