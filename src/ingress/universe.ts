/**
 * The two universes the ingress routes between. Kept in its own module so every ingress part can name
 * them without importing the server.
 */
export type UniverseName = 'old' | 'new';

export const UNIVERSES: readonly UniverseName[] = ['old', 'new'];

export function otherUniverse(u: UniverseName): UniverseName {
  return u === 'old' ? 'new' : 'old';
}
