#!/usr/bin/env node
// Runs every test file under test/ with node's test runner through Imago's loader (tsx; see src/loader).
// Node 20's `--test` does not expand globs, so the files are listed here.
// Extra arguments are passed on (e.g. `npm run test:unit -- --test-name-pattern=hold`).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const args = process.argv.slice(2);
const files = args.some((a) => a.endsWith('.test.ts')) ? [] : find('test').sort();
const result = spawnSync(
  process.execPath,
  ['--import', './src/loader/register.js', '--test', ...args, ...files],
  {
    stdio: 'inherit',
  },
);
process.exit(result.status ?? 1);
