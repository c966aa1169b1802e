// The replication stream's framer: CopyData payloads and forwarded messages come out whole and in
// order however the socket cuts the bytes (down to one byte per chunk, and one message spanning many).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CopyDataFramer } from '../src/capture/copy-data-framer.js';

function message(type: string, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(payload.length + 4, 1);
  return Buffer.concat([header, payload]);
}

const stream = [
  message('W', Buffer.from([0, 0, 0])), // CopyBothResponse
  message('d', Buffer.from('w first')),
  message('d', Buffer.alloc(0)),
  message('N', Buffer.from('notice\0')),
  message('E', Buffer.from('error\0')),
  message('d', Buffer.alloc(70_000, 'x')), // spans many chunks
  message('d', Buffer.from('k last')),
  message('c', Buffer.alloc(0)), // CopyDone
];
const bytes = Buffer.concat(stream);

function run(chunkSize: number): string[] {
  const seen: string[] = [];
  const forwarded: Buffer[] = [];
  const framer = new CopyDataFramer(
    (chunk, start, end) => seen.push(`d:${chunk.toString('latin1', start, end)}`),
    (b) => {
      forwarded.push(Buffer.from(b));
      seen.push(`forward:${b.length}`);
    },
  );
  for (let i = 0; i < bytes.length; i += chunkSize) framer.push(bytes.subarray(i, i + chunkSize));
  // What was forwarded is exactly the non-CopyData messages, byte for byte.
  assert.deepEqual(
    Buffer.concat(forwarded),
    Buffer.concat(stream.filter((m) => m[0] !== 0x64)),
    `chunk size ${chunkSize}`,
  );
  return seen
    .filter((s) => s.startsWith('d:'))
    .map((s) => (s.length > 20 ? `${s.slice(0, 8)}…${s.length}` : s));
}

test('CopyData payloads and forwarded messages survive any chunking', () => {
  const expected = run(bytes.length);
  assert.deepEqual(expected, ['d:w first', 'd:', 'd:xxxxxx…70002', 'd:k last']);
  for (const size of [1, 2, 3, 4, 5, 6, 7, 13, 64, 1000, 65_536]) assert.deepEqual(run(size), expected);
});
