/**
 * Change catch-up and apply lag against PostgreSQL's native logical replication (a subscription on an
 * identical target table), on the same backlog or the same live writes, in the same run.
 */
import pg from 'pg';
import { Converter } from '../conversion/converter.js';
import { defineConversion, identity } from '../conversion/api.js';
import { createDatabase, type Cluster } from '../universe/cluster.js';
import { waitUntil } from '../deadline.js';

const identityEv = defineConversion({ tables: { ev: identity() } });
const EV =
  'CREATE TABLE ev (id bigint PRIMARY KEY, v int NOT NULL, note text, created timestamptz NOT NULL DEFAULT clock_timestamp())';
/** The target's extra column is filled by its default when a row is applied: the same clock for both. */
const EV_TARGET = `CREATE TABLE ev (id bigint PRIMARY KEY, v int NOT NULL, note text, created timestamptz NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`;

export interface Backlog {
  transactions: number;
  rowsPerTransaction: number;
}

interface Consumers {
  native: { url: string; enable(): Promise<void>; drop(): Promise<void> };
  imago: { url: string; converter: Converter };
}

async function exec(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** A fresh source database and both consumers, each with its slot created before any change. */
async function setUp(
  oldCluster: Cluster,
  newCluster: Cluster,
  name: string,
  enabled: boolean,
): Promise<{ source: string } & Consumers> {
  const source = await createDatabase(oldCluster, name);
  await exec(
    source,
    `${EV}; CREATE PUBLICATION native_pub FOR TABLE ev;
    CREATE PROCEDURE backlog(txns int, per int) LANGUAGE plpgsql AS $$
    DECLARE base bigint := coalesce((SELECT max(id) FROM ev), 0);
    BEGIN
      FOR t IN 0 .. txns - 1 LOOP
        INSERT INTO ev (id, v, note) SELECT base + t::bigint * per + g, g, 'change ' || g FROM generate_series(1, per) g;
        COMMIT;
      END LOOP;
    END $$;`,
  );
  const nativeUrl = await createDatabase(newCluster, `native_${name}`);
  await exec(nativeUrl, EV_TARGET);
  await exec(
    nativeUrl,
    `CREATE SUBSCRIPTION native_${name} CONNECTION '${source.replace(/'/g, "''")}' PUBLICATION native_pub
      WITH (copy_data = false, create_slot = true, enabled = ${enabled}, slot_name = 'native_${name}')`,
  );
  const imagoUrl = await createDatabase(newCluster, `imago_${name}`);
  await exec(imagoUrl, EV_TARGET);
  const converter = new Converter({
    sourceUrl: source,
    targetUrl: imagoUrl,
    conversion: identityEv,
    name: `imago_${name}`,
  });
  await converter.prepare();
  await converter.copy();
  return {
    source,
    native: {
      url: nativeUrl,
      enable: async () => void (await exec(nativeUrl, `ALTER SUBSCRIPTION native_${name} ENABLE`)),
      drop: async () => void (await exec(nativeUrl, `DROP SUBSCRIPTION native_${name}`)),
    },
    imago: { url: imagoUrl, converter },
  };
}

async function waitForMaxId(url: string, maxId: number, what: string): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    await waitUntil(
      what,
      async () => {
        const { rows } = await client.query<{ m: string | null }>('SELECT max(id)::text AS m FROM ev');
        return Number(rows[0]?.m ?? 0) >= maxId ? true : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 10 },
    );
  } finally {
    await client.end();
  }
}

/** Changes per second drained from one backlog by native replication and by Imago (one after the other). */
export async function catchUpRates(oldCluster: Cluster, newCluster: Cluster, name: string, backlog: Backlog) {
  const setup = await setUp(oldCluster, newCluster, name, false);
  const changes = backlog.transactions * backlog.rowsPerTransaction;
  try {
    await exec(setup.source, 'CALL backlog($1, $2)', [backlog.transactions, backlog.rowsPerTransaction]);
    let started = performance.now();
    await setup.native.enable();
    await waitForMaxId(setup.native.url, changes, 'native replication draining the backlog');
    const nativeSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    await setup.imago.converter.startStreaming(() => {});
    await waitForMaxId(setup.imago.url, changes, 'Imago draining the backlog');
    const imagoSeconds = (performance.now() - started) / 1000;
    return { changes, nativePerS: changes / nativeSeconds, imagoPerS: changes / imagoSeconds };
  } finally {
    await setup.imago.converter.stop({ dropCapture: true });
    await setup.native.drop();
  }
}

/** Commit-to-applied lag under a steady rate of single-row transactions, both consumers live at once. */
export async function applyLag(
  oldCluster: Cluster,
  newCluster: Cluster,
  name: string,
  rate: number,
  seconds: number,
) {
  const setup = await setUp(oldCluster, newCluster, name, true);
  await setup.imago.converter.startStreaming(() => {});
  const writer = new pg.Client(setup.source);
  await writer.connect();
  let id = 0;
  try {
    // synchronous_commit=on at the source: each commit is flushed, so WAL reaches consumers at once.
    await writer.query('SET synchronous_commit = on');
    const end = performance.now() + seconds * 1000;
    let due = performance.now();
    while (performance.now() < end) {
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      due += 1000 / rate;
      await writer.query('INSERT INTO ev (id, v) VALUES ($1, 0)', [++id]);
    }
    await waitForMaxId(setup.native.url, id, 'native replication applying the last write');
    await waitForMaxId(setup.imago.url, id, 'Imago applying the last write');
    const lag = async (url: string) => {
      const { rows } = await exec(
        url,
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
           FROM (SELECT extract(epoch FROM applied_at - created) * 1000 AS ms FROM ev) x`,
      );
      return { p50: Number(rows[0].p50), p99: Number(rows[0].p99) };
    };
    return { transactions: id, native: await lag(setup.native.url), imago: await lag(setup.imago.url) };
  } finally {
    await writer.end();
    await setup.imago.converter.stop({ dropCapture: true });
    await setup.native.drop();
  }
}
