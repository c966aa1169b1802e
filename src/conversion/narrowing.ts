/**
 * Column types that lose or refuse values on the way from a source column to the target column it
 * maps to: the target casts every value (docs/conversion.md, Types), so `timestamp(6)` into
 * `timestamp(3)` rounds to the millisecond without a word (seen later as 1 ms differences in the
 * runtime test), and a longer text into `varchar(n)` stops the conversion at that row. The dry run
 * warns of each such column before anything starts. Types are compared as `format_type` prints them.
 */

type ParsedType =
  | { kind: 'time'; base: 'timestamp' | 'time'; zone: boolean; precision: number }
  | { kind: 'text'; length: number }
  | { kind: 'int'; bytes: number }
  | { kind: 'numeric'; precision: number; scale: number }
  | { kind: 'float'; bytes: number };

const INT_BYTES: Record<string, number> = { smallint: 2, integer: 4, bigint: 8 };
/** Decimal digits an integer type can need. */
const INT_DIGITS: Record<number, number> = { 2: 5, 4: 10, 8: 19 };

function parseType(type: string): ParsedType | undefined {
  const time = /^(timestamp|time)(?:\((\d)\))? (with|without) time zone$/.exec(type);
  if (time)
    return {
      kind: 'time',
      base: time[1] as 'timestamp' | 'time',
      zone: time[3] === 'with',
      precision: time[2] === undefined ? 6 : Number(time[2]),
    };
  if (type === 'text') return { kind: 'text', length: Infinity };
  const varchar = /^character varying(?:\((\d+)\))?$/.exec(type);
  if (varchar) return { kind: 'text', length: varchar[1] === undefined ? Infinity : Number(varchar[1]) };
  const char = /^character(?:\((\d+)\))?$/.exec(type);
  if (char) return { kind: 'text', length: char[1] === undefined ? 1 : Number(char[1]) };
  const bytes = INT_BYTES[type];
  if (bytes !== undefined) return { kind: 'int', bytes };
  const numeric = /^numeric(?:\((\d+)(?:,(\d+))?\))?$/.exec(type);
  if (numeric)
    return numeric[1] === undefined
      ? { kind: 'numeric', precision: Infinity, scale: Infinity }
      : { kind: 'numeric', precision: Number(numeric[1]), scale: Number(numeric[2] ?? 0) };
  if (type === 'real') return { kind: 'float', bytes: 4 };
  if (type === 'double precision') return { kind: 'float', bytes: 8 };
  return undefined;
}

/** Digits before the decimal point a numeric type holds (unconstrained: any). */
const integerDigits = (t: { precision: number; scale: number }) =>
  t.precision === Infinity ? Infinity : t.precision - t.scale;

/** What the target type does to some values of the source type, or undefined when it keeps them all. */
export function narrowing(from: string, to: string): string | undefined {
  const f = parseType(from);
  const t = parseType(to);
  if (!f || !t || from === to) return undefined;
  if (f.kind === 'time' && t.kind === 'time' && f.base === t.base) {
    const what: string[] = [];
    if (t.precision < f.precision)
      what.push(
        `rounds to ${t.precision === 0 ? 'whole seconds' : `${t.precision} fractional digit${t.precision === 1 ? '' : 's'} of a second`}`,
      );
    if (f.zone && !t.zone) what.push("drops the time zone (the value is read in the session's zone)");
    return what.length > 0 ? what.join(' and ') : undefined;
  }
  if (f.kind === 'text' && t.kind === 'text')
    return t.length < f.length
      ? `refuses values longer than ${t.length} character${t.length === 1 ? '' : 's'} (the conversion stops at such a row)`
      : undefined;
  if (f.kind === 'int' && t.kind === 'int')
    return t.bytes < f.bytes
      ? `refuses values outside ${to}'s range (the conversion stops at such a row)`
      : undefined;
  if (f.kind === 'float' && t.kind === 'float')
    return t.bytes < f.bytes ? 'keeps about 6 significant digits of 15' : undefined;
  if ((f.kind === 'numeric' || f.kind === 'float') && t.kind === 'int')
    return `rounds fractions to whole numbers and refuses values outside ${to}'s range`;
  if (f.kind === 'float' && t.kind === 'numeric')
    return t.scale === Infinity ? undefined : `rounds to ${t.scale} decimal place${t.scale === 1 ? '' : 's'}`;
  if ((f.kind === 'numeric' || f.kind === 'int') && t.kind === 'numeric') {
    const fromScale = f.kind === 'int' ? 0 : f.scale;
    const fromDigits = f.kind === 'int' ? (INT_DIGITS[f.bytes] ?? 19) : integerDigits(f);
    const what: string[] = [];
    if (t.scale < fromScale) what.push(`rounds to ${t.scale} decimal place${t.scale === 1 ? '' : 's'}`);
    const digits = integerDigits(t);
    if (digits < fromDigits)
      what.push(`refuses values of more than ${digits} integer digit${digits === 1 ? '' : 's'}`);
    return what.length > 0 ? what.join(' and ') : undefined;
  }
  return undefined;
}
