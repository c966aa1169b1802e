/**
 * The blog's storage, for either version: the same SQL over the version's names (schema.ts), so both
 * answer the same thing for the same data. Timestamps are formatted by PostgreSQL (milliseconds, as
 * `timestamp(3)` holds them), tags sorted by their bytes, so answers compare byte for byte.
 */
import type pg from 'pg';
import { inTransaction } from '../wiki/sql.js';
import type { BlogSchema } from './schema.js';
import { postSlug } from './slug.js';

export interface UserView {
  id: number;
  email: string;
  name: string;
  createdAt: string;
  updatedAt: string;
}

export interface PostView {
  id: number;
  authorId: number;
  title: string;
  content: string | null;
  published: boolean;
  createdAt: string;
  updatedAt: string;
  tags: string[];
}

export interface PostChange {
  title?: string;
  content?: string | null;
  published?: boolean;
}

export interface NewPost {
  authorId: number;
  title: string;
  content: string | null;
  published: boolean;
  tags: string[];
}

export interface BlogStore {
  /** Newest first. */
  users(limit: number): Promise<UserView[]>;
  user(id: number): Promise<UserView | undefined>;
  /** Undefined when the email is taken. */
  createUser(email: string, name: string): Promise<UserView | undefined>;
  /** Newest first. */
  posts(limit: number): Promise<PostView[]>;
  post(id: number): Promise<PostView | undefined>;
  /** Undefined when the author does not exist. */
  createPost(post: NewPost): Promise<PostView | undefined>;
  /** Undefined when the post does not exist. */
  updatePost(id: number, change: PostChange): Promise<PostView | undefined>;
  /** Adds the tag (created if new) to the post; undefined when the post does not exist. */
  tagPost(id: number, tag: string): Promise<PostView | undefined>;
  /** v2 only: the post of a slug. */
  postBySlug?(slug: string): Promise<PostView | undefined>;
}

const q = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;
const iso = (expression: string) => `to_char(${expression}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const UNIQUE_VIOLATION = '23505';

export function blogStore(pool: pg.Pool, s: BlogSchema): BlogStore {
  const { user: u, post: p, tag: t, postTag: pt } = s;
  const selectUser = `SELECT u.${q(u.id)} AS id, u.${q(u.email)} AS email, u.${q(u.name)} AS name,
      ${iso(`u.${q(u.createdAt)}`)} AS "createdAt", ${iso(`u.${q(u.updatedAt)}`)} AS "updatedAt"
    FROM ${q(u.table)} u`;
  const selectPost = `SELECT p.${q(p.id)} AS id, p.${q(p.authorId)} AS "authorId", p.${q(p.title)} AS title,
      p.${q(p.content)} AS content, p.${q(p.published)} AS published,
      ${iso(`p.${q(p.createdAt)}`)} AS "createdAt", ${iso(`p.${q(p.updatedAt)}`)} AS "updatedAt",
      COALESCE((SELECT array_agg(t.${q(t.name)} ORDER BY t.${q(t.name)} COLLATE "C")
        FROM ${q(pt.table)} pt JOIN ${q(t.table)} t ON t.${q(t.id)} = pt.${q(pt.tagId)}
        WHERE pt.${q(pt.postId)} = p.${q(p.id)}), '{}') AS tags
    FROM ${q(p.table)} p`;

  const post = async (db: pg.Pool | pg.PoolClient, id: number) =>
    (await db.query<PostView>(`${selectPost} WHERE p.${q(p.id)} = $1`, [id])).rows[0];

  // Sorted, so that two posts tagged at once take the tags' index entries in the same order.
  const addTags = async (client: pg.PoolClient, postId: number, names: string[]) => {
    const sorted = [...new Set(names)].sort();
    if (sorted.length === 0) return;
    await client.query(
      `INSERT INTO ${q(t.table)} (${q(t.name)}) SELECT unnest($1::text[]) ON CONFLICT (${q(t.name)}) DO NOTHING`,
      [sorted],
    );
    await client.query(
      `INSERT INTO ${q(pt.table)} (${q(pt.postId)}, ${q(pt.tagId)})
       SELECT $1, ${q(t.id)} FROM ${q(t.table)} WHERE ${q(t.name)} = ANY($2::text[]) ORDER BY ${q(t.id)}
       ON CONFLICT DO NOTHING`,
      [postId, sorted],
    );
  };

  // The row is kept from being deleted (or its key changed) until the transaction ends.
  const exists = async (client: pg.PoolClient, table: { table: string; id: string }, id: number) =>
    (await client.query(`SELECT 1 FROM ${q(table.table)} WHERE ${q(table.id)} = $1 FOR KEY SHARE`, [id]))
      .rowCount === 1;

  return {
    users: async (limit) =>
      (await pool.query<UserView>(`${selectUser} ORDER BY u.${q(u.id)} DESC LIMIT $1`, [limit])).rows,
    user: async (id) => (await pool.query<UserView>(`${selectUser} WHERE u.${q(u.id)} = $1`, [id])).rows[0],
    createUser: async (email, name) => {
      try {
        const { rows } = await pool.query<{ id: number }>(
          `INSERT INTO ${q(u.table)} (${q(u.email)}, ${q(u.name)}, ${q(u.updatedAt)})
           VALUES ($1, $2, CURRENT_TIMESTAMP) RETURNING ${q(u.id)} AS id`,
          [email, name],
        );
        return (await pool.query<UserView>(`${selectUser} WHERE u.${q(u.id)} = $1`, [rows[0]?.id])).rows[0];
      } catch (err) {
        if ((err as { code?: string }).code === UNIQUE_VIOLATION) return undefined;
        throw err;
      }
    },
    posts: async (limit) =>
      (await pool.query<PostView>(`${selectPost} ORDER BY p.${q(p.id)} DESC LIMIT $1`, [limit])).rows,
    post: (id) => post(pool, id),
    createPost: (input) =>
      inTransaction(pool, async (client) => {
        if (!(await exists(client, u, input.authorId))) return undefined;
        // The slug needs the id: take it from the sequence first.
        const { rows } = await client.query<{ id: number }>(
          `SELECT nextval(pg_get_serial_sequence($1, $2))::int AS id`,
          [q(p.table), p.id],
        );
        const id = Number(rows[0]?.id);
        const columns = [p.id, p.authorId, p.title, p.content, p.published, p.updatedAt];
        const values = [id, input.authorId, input.title, input.content, input.published];
        if (p.slug) {
          columns.push(p.slug);
          values.push(postSlug(input.title, id));
        }
        const params = values.map((_, i) => `$${i + 1}`);
        params.splice(5, 0, 'CURRENT_TIMESTAMP');
        await client.query(
          `INSERT INTO ${q(p.table)} (${columns.map(q).join(', ')}) VALUES (${params.join(', ')})`,
          values,
        );
        await addTags(client, id, input.tags);
        return post(client, id);
      }),
    updatePost: async (id, change) => {
      const { rowCount } = await pool.query(
        `UPDATE ${q(p.table)} SET
           ${q(p.title)} = COALESCE($2, ${q(p.title)}),
           ${q(p.content)} = CASE WHEN $3 THEN $4 ELSE ${q(p.content)} END,
           ${q(p.published)} = COALESCE($5, ${q(p.published)}),
           ${q(p.updatedAt)} = CURRENT_TIMESTAMP
           ${p.slug ? `, ${q(p.slug)} = COALESCE($6, ${q(p.slug)})` : ''}
         WHERE ${q(p.id)} = $1`,
        [
          id,
          change.title ?? null,
          change.content !== undefined,
          change.content ?? null,
          change.published ?? null,
          ...(p.slug ? [change.title === undefined ? null : postSlug(change.title, id)] : []),
        ],
      );
      return rowCount === 1 ? post(pool, id) : undefined;
    },
    tagPost: (id, tag) =>
      inTransaction(pool, async (client) => {
        if (!(await exists(client, p, id))) return undefined;
        await addTags(client, id, [tag]);
        return post(client, id);
      }),
    ...(p.slug
      ? {
          postBySlug: async (slug: string) =>
            (await pool.query<PostView>(`${selectPost} WHERE p.${q(p.slug as string)} = $1`, [slug])).rows[0],
        }
      : {}),
  };
}
