/**
 * The target tables of one bulk copy, shared by every table's copy: each is described once (key,
 * columns), recorded in `imago.targets` (an interrupted copy empties it before starting over) and,
 * when empty, has its indexes deferred until the copy is done (deferred-indexes.ts) — all on a
 * connection of its own, committed before the first row is written.
 */
import type pg from 'pg';
import { deferIndexes, deferredTables, restoreDeferred } from './deferred-indexes.js';
import { TargetCatalog, type TargetTable } from './target.js';
import { tableKey } from '../sql.js';

export class CopyTargets {
  private readonly catalog: TargetCatalog;
  private readonly tables = new Map<string, Promise<TargetTable>>();
  private readonly resolved = new Map<string, TargetTable>();
  /** Tables whose indexes are deferred now: rows go in with COPY, no key can conflict. */
  private readonly deferred = new Set<string>();
  private readonly restoring = new Map<string, Promise<void>>();

  constructor(
    private readonly client: pg.Client,
    private readonly targetUrl: string,
    private readonly defer: boolean,
  ) {
    this.catalog = new TargetCatalog(client);
  }

  /** The table if already described (and its indexes deferred): no await per row on the hot path. */
  known(name: string): TargetTable | undefined {
    return this.resolved.get(name);
  }

  /** The table however it is spelled (src/sql.ts), kept under its canonical spelling. */
  table(spelling: string): Promise<TargetTable> {
    const name = tableKey(spelling, 'a target row');
    let table = this.tables.get(name);
    if (!table) {
      table = (async () => {
        const t = await this.catalog.table(name);
        if (this.defer && (await deferIndexes(this.client, name))) this.deferred.add(name);
        this.resolved.set(name, t);
        return t;
      })();
      this.tables.set(name, table);
    }
    return table;
  }

  isDeferred(name: string): boolean {
    return this.deferred.has(name);
  }

  /** Before a lookup reads `name`: its indexes are built first (a lookup must not scan the table). */
  ready(spelling: string): Promise<void> | undefined {
    const name = tableKey(spelling, 'a lookup');
    // Undefined when there is nothing to wait for: a lookup then costs no extra promise.
    if (!this.deferred.has(name)) return this.restoring.get(name);
    let restoring = this.restoring.get(name);
    if (!restoring) {
      restoring = this.restore([name]);
      this.restoring.set(name, restoring);
    }
    return restoring;
  }

  /** Builds every deferred index again (also those an interrupted copy left), a table per connection. */
  async restoreAll(): Promise<void> {
    await Promise.all(this.restoring.values());
    await this.restore(await deferredTables(this.client));
  }

  async end(): Promise<void> {
    await this.client.end().catch(() => {});
  }

  private restore(tables: string[]): Promise<void> {
    return restoreDeferred(this.targetUrl, tables, (name) => this.deferred.delete(name));
  }
}
