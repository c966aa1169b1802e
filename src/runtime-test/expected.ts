/**
 * Declared expected differences: what the plan says the new version changes on purpose. Either
 * paths (with the kind of change) that are then not counted, or a typed function mapping an old
 * answer to the expected new one, which is stricter: the new value itself is checked.
 */
import type { Answer } from './answer.js';
import type { ExpectedDifference, OldAnswerContext } from './config.js';
import type { Difference } from './differ.js';
import { PathPattern } from './paths.js';

export type Declared = Extract<ExpectedDifference, { paths: string[] }>;
type Mapping = Extract<ExpectedDifference, { expect: unknown }>;

export function isMapping(e: ExpectedDifference): e is Mapping {
  return 'expect' in e;
}

export function isDeclaration(e: ExpectedDifference): e is Declared {
  return 'paths' in e;
}

/** The answer the new universe should give, from the old one, through every mapping in scope. */
export function expectedAnswer(old: Answer, request: OldAnswerContext, mappings: readonly Mapping[]): Answer {
  let answer = old;
  for (const m of mappings) answer = m.expect(answer, request);
  return answer;
}

/** True when a declared expected difference covers this difference. */
export function isDeclared(d: Difference, declared: readonly Declared[]): boolean {
  return declared.some(
    (e) =>
      (e.change === undefined || e.change === 'any' || e.change === d.kind) &&
      e.paths.some((p) => new PathPattern(p).matches(d.path)),
  );
}

/**
 * A typed mapping for JSON APIs: `map` turns the old body into the new one. Applied to 2xx answers
 * only unless `statuses` says otherwise (error bodies rarely change with the API).
 *
 *   expectJson<PageV1, PageV2>('GET /wiki/:title', (p) => ({ ...p, length: Buffer.byteLength(p.text) }))
 */
export function expectJson<Old, New>(
  endpoint: string | undefined,
  map: (body: Old, old: Answer) => New,
  options: { statuses?: (status: number) => boolean; why?: string } = {},
): ExpectedDifference {
  const applies = options.statuses ?? ((s: number) => s >= 200 && s < 300);
  return {
    endpoint,
    why: options.why,
    expect: (old) =>
      old.body.kind === 'json' && applies(old.status)
        ? { ...old, body: { kind: 'json', value: map(old.body.value as Old, old) } }
        : old,
  };
}
