// When the new app fails to start, what Imago shows is the first error block of its log (the
// message and the top of its stack), with the log's path and the app's passwords masked: not the
// log's last lines, which for a Node app are its innermost frames and Node's version banner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImagoError } from '../src/errors.js';
import { startDetachedApp } from '../src/driver/new-app.js';
import { firstErrorBlock, lastLines, maskSecrets } from '../src/universe/startup-error.js';

/** What a real Node process prints when it throws at start (stdout and stderr, as in an app's log). */
function nodeCrash(source: string): string {
  const r = spawnSync(process.execPath, ['-e', source], { encoding: 'utf8' });
  return r.stdout + r.stderr;
}

test("a Node app's uncaught exception: its message and stack, not the source excerpt or the banner", () => {
  const log = nodeCrash(
    "console.log('shop listening soon');\nfunction connect() { throw new Error('connect ECONNREFUSED 127.0.0.1:5432'); }\nconnect();",
  );
  assert.match(log, /Node\.js v\d/, 'the log ends with the banner the old excerpt showed');
  const block = firstErrorBlock(log) ?? [];
  assert.equal(block[0], 'Error: connect ECONNREFUSED 127.0.0.1:5432');
  assert.match(block[1] ?? '', /^\s+at connect \(/);
  assert.ok(
    block.slice(1).every((l) => /^\s+at /.test(l)),
    block.join('\n'),
  );
  assert.ok(!block.some((l) => /Node\.js v|throw new Error/.test(l)), block.join('\n'));
});

test('an error object with its properties, a logger’s ERROR line, and a log with no error at all', () => {
  const log = nodeCrash(
    "const e = new Error('password authentication failed for user \"shop\"'); e.code = '28P01'; throw e;",
  );
  const block = firstErrorBlock(log) ?? [];
  assert.equal(block[0], 'Error: password authentication failed for user "shop"');
  assert.ok(
    block.some((l) => /code: '28P01'/.test(l)),
    block.join('\n'),
  );
  assert.equal(block.at(-1), '}');

  const nest = [
    '\x1b[32m[Nest] 41  - \x1b[39m01/02/2026, 10:00:00 AM \x1b[32m    LOG\x1b[39m [NestFactory] Starting Nest application...',
    "[Nest] 41  - 01/02/2026, 10:00:01 AM   \x1b[31mERROR\x1b[39m [ExceptionHandler] Can't reach database server at `db:5432`",
    "PrismaClientInitializationError: Can't reach database server at `db:5432`",
    '    at t (/app/node_modules/@prisma/client/runtime/library.js:111:2488)',
    '',
    'Node.js v20.20.2',
  ].join('\n');
  assert.deepEqual(firstErrorBlock(nest), [
    "[Nest] 41  - 01/02/2026, 10:00:01 AM   ERROR [ExceptionHandler] Can't reach database server at `db:5432`",
    "PrismaClientInitializationError: Can't reach database server at `db:5432`",
    '    at t (/app/node_modules/@prisma/client/runtime/library.js:111:2488)',
  ]);

  const quiet = 'starting\nlistening on 3000\nshutting down\n\nNode.js v20.20.2\n';
  assert.equal(firstErrorBlock(quiet), undefined);
  assert.deepEqual(lastLines(quiet), ['starting', 'listening on 3000', 'shutting down']);
});

test('the passwords the app was given and connection passwords are masked', () => {
  assert.equal(
    maskSecrets('auth failed: p@ss/w:rd for postgresql://shop:other@db/shop', ['p@ss/w:rd']),
    'auth failed: *** for postgresql://shop:***@db/shop',
  );
});

test('startDetachedApp: an app that exits at start is reported with its first error and its log', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'imago-startup-error-'));
  try {
    const app = join(dir, 'app.mjs');
    await writeFile(
      app,
      [
        "console.log('shop v2 starting on port', process.env.PORT);",
        'const url = `postgresql://shop:${process.env.DB_PASSWORD}@127.0.0.1:1/shop`;',
        'function connect() { throw new Error(`cannot connect to ${url} as ${process.env.DB_PASSWORD}`); }',
        'connect();',
      ].join('\n'),
    );
    const start = () =>
      startDetachedApp({
        command: [process.execPath, app],
        env: { DB_PASSWORD: 'hunter2-secret' },
        cwd: dir,
        logDir: dir,
        secrets: ['hunter2-secret'],
      });
    // Twice: the log is appended to, and the second report is the second start's own error.
    for (let i = 0; i < 2; i++) {
      const err = await start().then(
        () => assert.fail('the app cannot start'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ImagoError, String(err));
      const lines = err.message.split('\n');
      assert.match(lines[0] ?? '', /^the new app exited while starting \(exit code 1\); its first error:$/);
      assert.equal(lines[1], '    Error: cannot connect to postgresql://shop:***@127.0.0.1:1/shop as ***');
      assert.match(lines[2] ?? '', /^\s+at connect \(file:\/\/.*app\.mjs:3:/);
      assert.equal(lines.at(-1), `  log: ${join(dir, 'new-app.log')}`);
      assert.equal(err.subject, join(dir, 'new-app.log'));
      assert.doesNotMatch(err.message, /hunter2|Node\.js v/);
      assert.equal(lines.filter((l) => /Error: cannot connect/.test(l)).length, 1);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('startDetachedApp: one that never passes its health check says what the check last saw', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'imago-startup-error-'));
  try {
    const app = join(dir, 'app.mjs');
    // Up, but its /healthz answers 503 and it logs why.
    await writeFile(
      app,
      [
        "import { createServer } from 'node:http';",
        "console.error('ERROR migrations pending: run them first');",
        "createServer((_, res) => { res.statusCode = 503; res.end(); }).listen(Number(process.env.PORT), '127.0.0.1');",
      ].join('\n'),
    );
    const err = await startDetachedApp({
      command: [process.execPath, app],
      env: {},
      cwd: dir,
      logDir: dir,
      timeoutMs: 1_500,
    }).then(
      () => assert.fail('the app is never healthy'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ImagoError, String(err));
    assert.match(
      err.message,
      /^the new app did not pass its health check within 1500 ms \(last: GET http:\/\/127\.0\.0\.1:\d+\/healthz answered 503 \(healthy: 200-299\)\); its first error:\n {4}ERROR migrations pending: run them first\n {2}log: /,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
