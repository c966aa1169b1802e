/** PostgreSQL log sequence numbers ("16/B374D848") as bigint, so they compare and subtract exactly. */
export type Lsn = bigint;

export function parseLsn(text: string): Lsn {
  const [hi, lo] = text.split('/');
  if (hi === undefined || lo === undefined) throw new Error(`not an LSN: "${text}"`);
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
