/**
 * Fills a blog v1 database (migrating it first): users, posts by them, a few tags and two tags per
 * post, with creation times spread over months and non-ASCII names and titles. Deterministic: the
 * same counts give the same rows.
 */
import pg from 'pg';
import { migrate } from './db.js';
import { schemaV1 } from './v1/schema.js';

export const SEED_TAGS = ['postgres', 'node', 'prisma', 'drizzle', 'upgrades', 'ops', 'über', '東京'];

export async function seedBlog(
  databaseUrl: string,
  { users = 100, posts = 300 }: { users?: number; posts?: number } = {},
): Promise<{ users: number; posts: number; tags: number; postTags: number }> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, options: '-c TimeZone=UTC' });
  try {
    await migrate(pool, schemaV1);
    const { rowCount } = await pool.query(`SELECT 1 FROM "User" LIMIT 1`);
    if (rowCount)
      throw new Error(
        `${new URL(databaseUrl).pathname.slice(1)} already holds users: seed an empty database`,
      );
    const counts = await pool.query<{ users: number; posts: number; tags: number; post_tags: number }>(
      `WITH u AS (
         INSERT INTO "User" ("email", "name", "createdAt", "updatedAt")
         SELECT 'user' || i || '@example.com', (ARRAY['Zoë Ångström', 'Ann Lee', 'José Núñez', '山田 太郎'])[1 + i % 4] || ' ' || i,
                t, t + interval '1 day'
         FROM generate_series(1, $1::int) i, LATERAL (SELECT timestamp '2026-01-01' + i * interval '61 minutes 0.123 seconds' AS t) ts
         RETURNING 1),
       t AS (INSERT INTO "Tag" ("name") SELECT unnest($2::text[]) RETURNING 1)
       SELECT (SELECT count(*) FROM u)::int AS users, (SELECT count(*) FROM t)::int AS tags`,
      [users, SEED_TAGS],
    );
    await pool.query(
      `INSERT INTO "Post" ("title", "content", "published", "authorId", "createdAt", "updatedAt")
       SELECT 'Grüße aus Tōkyō, part ' || i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'Post ' || i || ' – ✓' END,
              i % 3 = 0, 1 + (i * 7) % $1::int, t, t
       FROM generate_series(1, $2::int) i, LATERAL (SELECT timestamp '2026-02-01' + i * interval '17 minutes 0.457 seconds' AS t) ts`,
      [users, posts],
    );
    const tagged = await pool.query(
      `INSERT INTO "PostTag" ("postId", "tagId", "assignedAt")
       SELECT p."id", t."id", p."createdAt" FROM "Post" p JOIN "Tag" t
         ON t."id" IN (1 + p."id" % $1::int, 1 + (p."id" * 3 + 1) % $1::int)`,
      [SEED_TAGS.length],
    );
    const row = counts.rows[0];
    return { users: row?.users ?? 0, posts, tags: row?.tags ?? 0, postTags: tagged.rowCount ?? 0 };
  } finally {
    await pool.end();
  }
}
