/**
 * The names of an upgrade's capture on the old database, derived from the upgrade (conversion) name
 * alone: the converter that creates them, the abort that drops them and `imago status` that finds
 * them left behind all name them with these functions.
 */
export function slotName(upgrade: string): string {
  return `${upgrade}_slot`;
}

export function publicationName(upgrade: string): string {
  return `${upgrade}_pub`;
}
