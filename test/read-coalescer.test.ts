// Read coalescing on the replication socket: only a stream that is behind waits, only after a small
// read, only briefly, and the caller's backpressure is never undone by the coalescer's timer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { ReadCoalescer } from '../src/capture/read-coalescer.js';
import { waitUntil } from '../src/deadline.js';
import { PgoutputDecoder, pgTimestampMs, type PgoutputSink } from '../src/capture/pgoutput.js';

function reading(): { socket: Socket; coalescer: ReadCoalescer } {
  const socket = new Socket();
  socket.resume();
  return { socket, coalescer: new ReadCoalescer(socket) };
}

const resumed = (socket: Socket) =>
  waitUntil('the socket reading again', async () => (socket.isPaused() ? undefined : true), {
    timeoutMs: 2_000,
    intervalMs: 1,
  });

test('a live stream, or a large read, never waits', () => {
  const { socket, coalescer } = reading();
  coalescer.afterRead(100, 5); // 5 ms behind: live
  assert.equal(socket.isPaused(), false);
  coalescer.afterRead(64 * 1024, 60_000); // far behind, but the read gathered enough
  assert.equal(socket.isPaused(), false);
  coalescer.afterRead(100, Number.NaN); // behind unknown
  assert.equal(socket.isPaused(), false);
});

test('behind, a small read pauses the socket briefly, then reading goes on', async () => {
  const { socket, coalescer } = reading();
  coalescer.afterRead(700, 60_000);
  assert.equal(socket.isPaused(), true);
  await resumed(socket);
  coalescer.stop();
});

test("the caller's hold outlasts the coalescer's wait, and its release waits for it", async () => {
  const { socket, coalescer } = reading();
  coalescer.afterRead(700, 60_000);
  coalescer.hold();
  // The wait ends; the hold keeps the socket paused until released.
  await waitUntil('the wait to end', async () => (coalescer.waiting ? undefined : true), {
    timeoutMs: 2_000,
    intervalMs: 1,
  });
  assert.equal(socket.isPaused(), true);
  coalescer.release();
  assert.equal(socket.isPaused(), false);

  // Released during a wait: paused until the wait ends.
  coalescer.hold();
  coalescer.afterRead(700, 60_000);
  coalescer.release();
  assert.equal(socket.isPaused(), true);
  await resumed(socket);
  coalescer.stop();
});

test("how far behind: the server's send time and the commit time of the transaction begun", () => {
  const microsSince2000 = (ms: number) => BigInt(ms - 946_684_800_000) * 1000n;
  const committed = Date.UTC(2026, 11, 4, 12, 0, 0, 250);
  const begin = Buffer.alloc(21);
  begin.write('B', 0, 'latin1');
  begin.writeBigUInt64BE(0x16b374d848n, 1); // final LSN
  begin.writeBigInt64BE(microsSince2000(committed) + 123n, 9);
  begin.writeInt32BE(777, 17);
  const xids: number[] = [];
  const sink: PgoutputSink = { begin: (xid) => xids.push(xid), change() {}, message() {}, commit() {} };
  const decoder = new PgoutputDecoder(sink);
  assert.ok(Number.isNaN(decoder.commitTimeMs), 'unknown before any transaction');
  decoder.decode(begin, 0, begin.length);
  assert.deepEqual(xids, [777]);
  assert.equal(decoder.commitTimeMs, committed + 0.123);
  // An XLogData header: 'w', dataStart, walEnd, then the send time, read at offset 17.
  const header = Buffer.alloc(25);
  header.writeBigInt64BE(microsSince2000(committed + 150), 17);
  assert.equal(pgTimestampMs(header, 17) - committed, 150);
});
