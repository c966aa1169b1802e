/**
 * What the wiki's upgrade plan says about runtime testing: its routes, and the one intended
 * difference of v2 — page answers carry `length`, the UTF-8 byte length of the text — declared as a
 * typed mapping, so that the value itself is checked, not just tolerated.
 */
import type { PageView } from './api.js';
import { expectJson, type RuntimeTestConfig } from 'imago/plan';

export const wikiRuntimeTest: RuntimeTestConfig = {
  routes: ['GET /wiki/:title', 'GET /wiki/:title/history', 'GET /recent'],
  expected: [
    expectJson<PageView, Required<PageView>>(
      'GET /wiki/:title',
      (page) => ({ ...page, length: Buffer.byteLength(page.text) }),
      { why: 'v2 stores the page length (MediaWiki 1.5 page_len)' },
    ),
  ],
  gate: { minComparedPerEndpoint: 50, maxMismatchRate: 0, maxNew5xx: 0, maxLatencyRatio: 2 },
  // Every other read: at the wiki's traffic the gate's minimum is still reached in seconds, and what
  // mirroring costs the old universe's clients is about halved (docs/benchmarks.md, runtime-test).
  sampleRate: 0.5,
};
