/**
 * Node's own UTF-8 slice of a Buffer, without Buffer#toString's encoding dispatch: a measurable
 * share of decoding at a million values a second (the replication stream, the bulk copy's parser).
 * (Undocumented; Buffer#toString where it is missing.)
 */
export const utf8Slice: (this: Buffer, start: number, end: number) => string =
  (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string })
    .utf8Slice ??
  function (this: Buffer, start: number, end: number) {
    return this.toString('utf8', start, end);
  };
