// Read coalescing on the replication socket: only a stream that is behind waits, only after a small
// read, only briefly, and the caller's backpressure is never undone by the coalescer's timer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { ReadCoalescer } from '../src/capture/read-coalescer.js';
import { waitUntil } from '../src/deadline.js';

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
