// Imago's loader (src/loader): its own TypeScript without tsx's per-closure keep-names wrappers,
// names and source-mapped stack traces intact, and everything else still loaded by tsx.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TS_LOADER } from '../src/loader/args.js';

const probe = fileURLToPath(new URL('./fixtures/loader-probe.ts', import.meta.url));
const run = (file: string): string =>
  execFileSync(process.execPath, [...TS_LOADER, file], { encoding: 'utf8' });

test("Imago's own files: no __name wrapper, inferred names, stack frames mapped to the source", () => {
  const report = JSON.parse(run(probe)) as { source: string; name: string; frame: string };
  assert.ok(!report.source.includes('__name'), report.source);
  assert.equal(report.name, 'abort');
  assert.match(report.frame, /test\/fixtures\/loader-probe\.ts:6:/);
});

test("files outside Imago's tree (users' plans and conversions) are still loaded by tsx", () => {
  const dir = mkdtempSync(join(tmpdir(), 'imago-loader-'));
  try {
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    const file = join(dir, 'user.ts');
    writeFileSync(
      file,
      'class C {\n  f = (n: number): number => n * 21;\n}\nprocess.stdout.write(C.toString());\n',
    );
    // tsx transforms with keep-names: its wrapper is in what it emitted, and the types are gone.
    assert.match(run(file), /__name\d*\(/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
