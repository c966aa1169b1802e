/**
 * A post's slug in v2: the title's words in lower-case ASCII, joined by dashes, then the post's id
 * (`grusse-aus-tokyo-42`), so two posts of the same title never share one. The conversion derives it
 * for v1's posts and v2 computes it for its own, with this one function.
 */
const WORDS_MAX = 60;

export function postSlug(title: string, id: number | string): string {
  const words = title
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    // ß has no decomposition; spelled out, as German does without it.
    .replace(/ß/g, 'ss')
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, WORDS_MAX)
    .replace(/^-+|-+$/g, '');
  return `${words || 'post'}-${id}`;
}
