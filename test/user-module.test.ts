// Plans and conversions as users write them, in a project whose package.json does not say
// `"type": "module"` (the npm default): ES module syntax in `.ts` and `.js` files, relative imports of
// their own helpers. Through the global loader they were taken for CommonJS and failed with
// "Cannot require() ES Module … in a cycle" (issue 21, item 12). And Imago imported by its package
// name (`imago`, `imago/conversion`, `imago/plan`), by the loaders and by `imago plan` as a process.
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConversion } from '../src/conversion/load-module.js';
import { loadPlan } from '../src/plan/load.js';
import { root } from './fixtures/driver-run.js';

let dir: string;
const api = (path: string) => JSON.stringify(join(root, path));

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'imago-user-module-test-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'shop', version: '1.0.0' }));
  writeFileSync(join(dir, 'tables.ts'), `export const users: string = 'User';\n`);
  writeFileSync(
    join(dir, 'conversion.ts'),
    `import { defineConversion, identity } from ${api('src/conversion/api.js')};
import { users } from './tables.ts';
export default defineConversion({ tables: { [users]: identity('users') } });
`,
  );
  writeFileSync(
    join(dir, 'posts-conversion.js'),
    `import { defineConversion, identity } from ${api('src/conversion/api.js')};
export default defineConversion({ tables: { Post: identity('posts') } });
`,
  );
  writeFileSync(
    join(dir, 'upgrade.ts'),
    `import { defineUpgrade } from ${api('src/plan/define.js')};
export default defineUpgrade({
  name: 'shop_v2',
  old: { database: 'postgresql://shop@127.0.0.1:5432/shop', app: { url: 'http://127.0.0.1:3000' } },
  new: { database: 'embedded', app: { command: ['node', 'server.js'], healthPath: '/api/health' } },
  conversion: './conversion.ts',
  ingress: { nodes: [{ name: 'edge', control: 'http://127.0.0.1:9000', token: '0123456789abcdef' }] },
});
`,
  );
  // Imago installed in the project (npm links a local install the same way).
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(root, join(dir, 'node_modules', 'imago'), 'dir');
  writeFileSync(
    join(dir, 'tags-conversion.ts'),
    `import { defineConversion } from 'imago';
import { identity } from 'imago/conversion';
export default defineConversion({ tables: { Tag: identity('tags') } });
`,
  );
  writeFileSync(
    join(dir, 'package-upgrade.ts'),
    `import { defineUpgrade, expectJson, type RuntimeTestConfig } from 'imago/plan';
const runtimeTest: RuntimeTestConfig = {
  expected: [expectJson<{ name: string }, { name: string; slug: string }>('GET /tags/:id', (t) => ({ ...t, slug: t.name.toLowerCase() }))],
};
export default defineUpgrade({
  name: 'shop_v3',
  old: { database: 'postgresql://shop@127.0.0.1:5432/shop', app: { url: 'http://127.0.0.1:3000' } },
  new: { database: 'embedded', app: { url: 'http://127.0.0.1:3001' } },
  conversion: './tags-conversion.ts',
  ingress: { nodes: [{ name: 'edge', control: 'http://127.0.0.1:9000', token: '0123456789abcdef' }] },
  switchover: { fencing: { mode: 'revoke', role: 'shop_app' } },
  runtimeTest,
});
`,
  );
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('a TypeScript conversion with a relative import, in a folder without "type": "module"', async () => {
  const conversion = await loadConversion(join(dir, 'conversion.ts'));
  assert.deepEqual(conversion.tables, { User: { identity: true, table: 'users' } });
});

test('a JavaScript conversion written as an ES module, in the same folder', async () => {
  const conversion = await loadConversion(join(dir, 'posts-conversion.js'));
  assert.deepEqual(conversion.tables, { Post: { identity: true, table: 'posts' } });
});

test('a TypeScript plan there, its conversion resolved next to it', async () => {
  const plan = await loadPlan(join(dir, 'upgrade.ts'));
  assert.equal(plan.name, 'shop_v2');
  assert.equal(plan.conversion, join(dir, 'conversion.ts'));
});

test('a project that imports Imago by its package name: imago, imago/conversion, imago/plan', async () => {
  const plan = await loadPlan(join(dir, 'package-upgrade.ts'));
  assert.equal(plan.name, 'shop_v3');
  assert.equal(plan.switchover.fencing.mode, 'revoke');
  // The runtime test's typed mapping, written with imago/plan's expectJson, maps an old answer.
  const [expected] = plan.runtimeTest?.expected ?? [];
  assert.ok(expected !== undefined && 'expect' in expected);
  const raw = Buffer.from('{"name":"Rust"}');
  const old = {
    status: 200,
    headers: {},
    body: { kind: 'json', value: { name: 'Rust' } },
    truncated: false,
    raw,
  } as const;
  assert.deepEqual(expected.expect(old, { method: 'GET', url: '/tags/1' }).body, {
    kind: 'json',
    value: { name: 'Rust', slug: 'rust' },
  });
  const conversion = await loadConversion(plan.conversion);
  assert.deepEqual(conversion.tables, { Tag: { identity: true, table: 'tags' } });
});

test('imago plan, run from the project through node_modules/imago, loads that plan', () => {
  const out = execFileSync(
    process.execPath,
    [
      join(dir, 'node_modules', 'imago', 'bin', 'imago.js'),
      'plan',
      'package-upgrade.ts',
      '--no-dry-run',
      '--json',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  ).toString();
  assert.deepEqual(JSON.parse(out.trim().split('\n').at(-1) ?? ''), { valid: true, name: 'shop_v3' });
});
