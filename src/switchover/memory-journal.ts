/** A journal kept in memory, for one-shot switches (the demo, the benches) that have no driver. */
import { commitEvent, type SwitchJournal } from './protocol.js';

const COMMITS = [commitEvent('forward'), commitEvent('back')];

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
      Promise.resolve(events.some((e) => COMMITS.includes(e.event) && e.detail.epoch === epoch)),
  };
}
