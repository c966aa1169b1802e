/**
 * The wiki v1 → v2 upgrade as a plan (`imago plan|start|switch examples/wiki/upgrade.ts`). The old
 * universe is a running wiki v1 (its database and URL come from the environment); the new universe's
 * wiki v2 is started by the driver on its own database. The app connects as `wiki_app`, which the
 * switch fences by revoking its write privileges on the converted tables.
 */
import { defineUpgrade, env } from 'imago/plan';
import { wikiRuntimeTest } from './runtime-test.js';

export default defineUpgrade({
  name: 'wiki_v2',
  old: {
    database: env('WIKI_OLD_DATABASE_URL'),
    app: { url: env('WIKI_OLD_URL') },
  },
  new: {
    database: env('WIKI_NEW_DATABASE_URL') || 'embedded',
    app: {
      command: ['node', '--import', 'tsx', 'v2/server.ts'],
      env: { DATABASE_URL: '{{new.database}}' },
    },
  },
  conversion: './conversion.ts',
  ingress: {
    nodes: [{ name: 'edge-1', control: env('WIKI_INGRESS_CONTROL'), token: env('WIKI_INGRESS_TOKEN') }],
  },
  switchover: {
    maxPauseMs: 500,
    maxCatchUpLagMs: 200,
    deadlines: { prepareMs: 200, drainMs: 300, fenceMs: 200, catchUpMs: 300, commitMs: 5_000 },
    fencing: { mode: 'revoke', role: 'wiki_app' },
  },
  // Reads mirrored to v2 and compared before the switch; the switch waits for the gate.
  runtimeTest: { ...wikiRuntimeTest, required: true },
});
