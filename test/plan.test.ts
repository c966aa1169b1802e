// Plans in TypeScript and YAML: defaults, resolved paths, and errors that name the field (and the
// YAML line) — never a stack trace. Also `imago plan --no-dry-run --json` on the wiki example.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPlan, parseYamlPlan, validatePlan } from '../src/plan/index.js';
import { ImagoError } from '../src/errors.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const minimal = {
  name: 'wiki_v2',
  old: { database: 'postgresql://u:secret@127.0.0.1:5432/wiki', app: { url: 'http://127.0.0.1:4000' } },
  new: { database: 'embedded', app: { command: ['node', 'v2/server.ts'] } },
  conversion: './conversion.ts',
  ingress: { nodes: [{ name: 'a', control: 'http://127.0.0.1:9000', token: '0123456789abcdef' }] },
};

function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ImagoError, String(err));
    return err.message;
  }
  assert.fail('expected the plan to be refused');
}

test('defaults are filled in and paths resolve against the plan folder', () => {
  const plan = validatePlan(minimal, '/plans/upgrade.ts');
  assert.equal(plan.conversion, '/plans/conversion.ts');
  assert.equal(plan.switchover.maxPauseMs, 2000);
  assert.equal(plan.switchover.fencing.mode, 'none');
  assert.equal(plan.switchover.deadlines.catchUpMs, 1000);
  assert.equal(plan.stateDir, '/plans/.imago');
  assert.ok('command' in plan.new.app && plan.new.app.cwd === '/plans');
  assert.deepEqual(plan.capture, {
    replicaIdentityFull: [],
    parallel: 1,
    walWarnMb: 1024,
    walLimitMb: 16384,
  });
});

test('errors name every faulty field', () => {
  const message = invalid(() =>
    validatePlan(
      {
        ...minimal,
        name: 'Wiki V2',
        switchover: { maxPauseMs: -1, maxPause: 3, fencing: { mode: 'revoke' } },
        ingress: { nodes: [] },
        capture: { parallel: 0, walLimitMb: -5 },
      },
      '/p/u.ts',
    ),
  );
  assert.match(message, /capture\.parallel: expected at least 1/);
  assert.match(message, /capture\.walLimitMb: expected a positive number \(MB\)/);
  assert.match(message, /name: expected lower-case letters/);
  assert.match(message, /switchover\.maxPauseMs: expected a positive number/);
  assert.match(message, /switchover: unknown field "maxPause"/);
  assert.match(message, /switchover\.fencing\.role: revoke and read-only fencing need the application role/);
  assert.match(message, /ingress\.nodes: expected at least one ingress node/);
  assert.match(
    invalid(() => validatePlan({ ...minimal, old: { ...minimal.old, database: 'mysql://x' } }, '/p')),
    /old\.database: expected a PostgreSQL connection string/,
  );
  assert.match(
    invalid(() => validatePlan({ ...minimal, switchover: { fencing: { mode: 'lock', role: 'x' } } }, '/p')),
    /switchover\.fencing\.mode: expected one of revoke, read-only, none/,
  );
});

test('YAML: the same plan, ${VAR} from the environment, line numbers in errors', () => {
  process.env.IMAGO_TEST_TOKEN = '0123456789abcdef';
  const yaml = `name: wiki_v2
old:
  database: postgresql://u:p@127.0.0.1/wiki
  app: { url: "http://127.0.0.1:4000" }
new:
  database: embedded
  app: { command: [node, v2/server.ts] }
conversion: ./conversion.ts
ingress:
  nodes:
    - { name: a, control: "http://127.0.0.1:9000", token: "\${IMAGO_TEST_TOKEN}" }
switchover:
  maxPauseMs: fast
`;
  assert.match(
    invalid(() => parseYamlPlan(yaml, '/p/u.yaml')),
    /switchover\.maxPauseMs: expected a positive number \(milliseconds\) \(line 13\)/,
  );
  const plan = parseYamlPlan(yaml.replace('fast', '250'), '/p/u.yaml');
  assert.equal(plan.switchover.maxPauseMs, 250);
  assert.equal(plan.ingress.nodes[0]?.token, '0123456789abcdef');
  assert.match(
    invalid(() => parseYamlPlan(yaml.replace('${IMAGO_TEST_TOKEN}', '${IMAGO_UNSET_VAR}'), '/p/u.yaml')),
    /ingress\.nodes\.0\.token: \$\{IMAGO_UNSET_VAR\}/,
  );
});

test('the wiki example plans load, in TypeScript and YAML alike', async () => {
  const env = {
    WIKI_OLD_DATABASE_URL: 'postgresql://postgres:pw@127.0.0.1:5432/wiki',
    WIKI_OLD_URL: 'http://127.0.0.1:4000',
    WIKI_NEW_DATABASE_URL: 'postgresql://postgres:pw@127.0.0.1:5433/wiki',
    WIKI_INGRESS_CONTROL: 'http://127.0.0.1:9000',
    WIKI_INGRESS_TOKEN: '0123456789abcdef0123',
  };
  Object.assign(process.env, env);
  const ts = await loadPlan(join(root, 'examples/wiki/upgrade.ts'));
  const yaml = await loadPlan(join(root, 'examples/wiki/upgrade.yaml'));
  // The same plan, but for the declared difference: a typed mapping in TypeScript, a path in YAML.
  const expectedOf = (p: typeof ts) => p.runtimeTest.expected;
  assert.deepEqual(
    { ...yaml, runtimeTest: { ...yaml.runtimeTest, expected: [] } },
    { ...ts, runtimeTest: { ...ts.runtimeTest, expected: [] } },
  );
  assert.equal(typeof (expectedOf(ts)?.[0] as { expect?: unknown }).expect, 'function');
  assert.deepEqual((expectedOf(yaml)?.[0] as { paths?: string[] }).paths, ['length']);
  assert.equal(ts.runtimeTest.required, true);
  assert.equal(ts.switchover.fencing.role, 'wiki_app');
  // The CLI: validation only, one JSON line; a broken plan is a readable error without a stack.
  const dir = mkdtempSync(join(tmpdir(), 'imago-plan-'));
  const out = execFileSync(
    process.execPath,
    ['bin/imago.js', 'plan', 'examples/wiki/upgrade.yaml', '--no-dry-run', '--json'],
    {
      cwd: root,
      env: { ...process.env, ...env },
    },
  ).toString();
  assert.deepEqual(JSON.parse(out.trim().split('\n').at(-1) ?? ''), { valid: true, name: 'wiki_v2' });
  writeFileSync(join(dir, 'bad.yaml'), 'name: x\nswitchover: { maxPauseMs: 0 }\n');
  let stderr = '';
  try {
    execFileSync(process.execPath, ['bin/imago.js', 'plan', join(dir, 'bad.yaml')], {
      cwd: root,
      stdio: 'pipe',
    });
  } catch (err) {
    stderr = String((err as { stderr: Buffer }).stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.match(stderr, /switchover\.maxPauseMs: expected a positive number/);
  assert.match(stderr, /old: required/);
  assert.doesNotMatch(stderr, /\n\s+at .*\.ts:\d+/);
});
