/**
 * Where the upgrade's databases are: connection strings from the plan, or `embedded` clusters the
 * driver starts. An embedded cluster has no database yet to journal in, so its address is kept in a
 * small file under the plan's stateDir; a resumed driver finds it there and reconnects. Embedded
 * clusters live as long as the driver that started them (demos and tests); production plans give URLs.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { canConnect } from '../universe/cluster.js';
import { startCluster, createDatabase } from '../universe/cluster.js';
import { ImagoError } from '../errors.js';
import type { UpgradePlan } from '../plan/index.js';

export interface Databases {
  old: string;
  new: string;
  control: string;
}

function bootstrapFile(plan: UpgradePlan, which: 'old' | 'new'): string {
  return join(plan.stateDir, plan.name, `${which}-cluster.json`);
}

/** The URLs without starting anything: for status and commands (fails if an embedded one is not up). */
export function knownDatabases(plan: UpgradePlan): Databases {
  const url = (which: 'old' | 'new'): string => {
    const db = plan[which].database;
    if (db !== 'embedded') return db;
    const file = bootstrapFile(plan, which);
    if (!existsSync(file))
      throw new ImagoError(
        `the embedded ${which} database has not been created yet`,
        file,
        'run `imago start` first',
      );
    return (JSON.parse(readFileSync(file, 'utf8')) as { url: string }).url;
  };
  const newUrl = url('new');
  return { old: url('old'), new: newUrl, control: plan.control.database ?? newUrl };
}

/** The URLs, starting embedded clusters that are not running yet. */
export async function provideDatabases(plan: UpgradePlan, say: (line: string) => void): Promise<Databases> {
  const url = async (which: 'old' | 'new'): Promise<string> => {
    const db = plan[which].database;
    if (db !== 'embedded') return db;
    const file = bootstrapFile(plan, which);
    if (existsSync(file)) {
      const known = (JSON.parse(readFileSync(file, 'utf8')) as { url: string }).url;
      if (await canConnect(known, 2_000)) return known;
      say(`the embedded ${which} cluster recorded in ${file} is gone: starting a new one`);
    }
    const cluster = await startCluster({ name: `${plan.name}-${which}` });
    const dbUrl = await createDatabase(cluster, plan.name);
    mkdirSync(join(plan.stateDir, plan.name), { recursive: true });
    writeFileSync(file, `${JSON.stringify({ url: dbUrl, pid: process.pid })}\n`, { mode: 0o600 });
    say(`started an embedded PostgreSQL cluster for the ${which} universe`);
    return dbUrl;
  };
  const newUrl = await url('new');
  return { old: await url('old'), new: newUrl, control: plan.control.database ?? newUrl };
}
