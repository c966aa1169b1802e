/**
 * The blog's HTTP API, the same in v1 and v2 so that their answers compare request by request:
 * validation and answer shapes here, storage in store.ts. JSON in and out; no `/healthz` (few ORM-built
 * apps have one): the health check is `GET /api/health`.
 */
import { z } from 'zod';
import { HttpError, type Reply, type Route } from '../wiki/http.js';
import type { BlogStore } from './store.js';

export const LIST_DEFAULT = 20;
export const LIST_MAX = 100;

// PostgreSQL text cannot hold NUL: refused here as a client error rather than failing in SQL.
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !s.includes('\0'), 'must not contain NUL');
const tagName = text(50);
const newUser = z.strictObject({
  email: text(254).regex(/^[^@\s]+@[^@\s]+$/, 'must be an email'),
  name: text(200),
});
const newPost = z.strictObject({
  authorId: z.number().int().positive(),
  title: text(200),
  content: text(10_000).nullable().default(null),
  published: z.boolean().default(false),
  tags: z.array(tagName).max(10).default([]),
});
const postChange = z.strictObject({
  title: text(200).optional(),
  content: text(10_000).nullable().optional(),
  published: z.boolean().optional(),
});
const newTag = z.strictObject({ name: tagName });

async function body<T>(json: () => Promise<unknown>, schema: z.ZodType<T>, shape: string): Promise<T> {
  const parsed = schema.safeParse(await json());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HttpError(400, `body must be ${shape}: ${issue?.path.join('.') || 'body'} ${issue?.message}`);
  }
  return parsed.data;
}

function id(params: Record<string, string>): number {
  const raw = params.id ?? '';
  if (!/^[1-9][0-9]{0,9}$/.test(raw) || Number(raw) > 2_147_483_647)
    throw new HttpError(400, 'id must be a positive integer');
  return Number(raw);
}

function limit(query: URLSearchParams): number {
  const raw = query.get('limit');
  if (raw === null) return LIST_DEFAULT;
  if (!/^[1-9][0-9]{0,8}$/.test(raw)) throw new HttpError(400, 'limit must be a positive integer');
  return Math.min(Number(raw), LIST_MAX);
}

const ok = (answer: unknown, status = 200): Reply => ({ status, body: answer });
const missing = (what: string): Reply => ({ status: 404, body: { error: `${what} does not exist` } });

export function blogRoutes(store: BlogStore): Route[] {
  const routes: Route[] = [
    { method: 'GET', path: '/api/health', handle: async () => ok({ status: 'ok' }) },
    {
      method: 'GET',
      path: '/api/users',
      handle: async ({ query }) => ok({ users: await store.users(limit(query)) }),
    },
    {
      method: 'POST',
      path: '/api/users',
      handle: async ({ json }) => {
        const input = await body(json, newUser, '{ email, name }');
        const user = await store.createUser(input.email, input.name);
        return user ? ok(user, 201) : { status: 409, body: { error: `email ${input.email} is taken` } };
      },
    },
    {
      method: 'GET',
      path: '/api/users/:id',
      handle: async ({ params }) => {
        const user = await store.user(id(params));
        return user ? ok(user) : missing(`user ${params.id}`);
      },
    },
    {
      method: 'GET',
      path: '/api/posts',
      handle: async ({ query }) => ok({ posts: await store.posts(limit(query)) }),
    },
    {
      method: 'POST',
      path: '/api/posts',
      handle: async ({ json }) => {
        const input = await body(json, newPost, '{ authorId, title, content?, published?, tags? }');
        const post = await store.createPost(input);
        return post
          ? ok(post, 201)
          : { status: 400, body: { error: `author ${input.authorId} does not exist` } };
      },
    },
    {
      method: 'GET',
      path: '/api/posts/:id',
      handle: async ({ params }) => {
        const post = await store.post(id(params));
        return post ? ok(post) : missing(`post ${params.id}`);
      },
    },
    {
      method: 'PATCH',
      path: '/api/posts/:id',
      handle: async ({ params, json }) => {
        const postId = id(params);
        const post = await store.updatePost(
          postId,
          await body(json, postChange, '{ title?, content?, published? }'),
        );
        return post ? ok(post) : missing(`post ${postId}`);
      },
    },
    {
      method: 'POST',
      path: '/api/posts/:id/tags',
      handle: async ({ params, json }) => {
        const postId = id(params);
        const post = await store.tagPost(postId, (await body(json, newTag, '{ name }')).name);
        return post ? ok(post) : missing(`post ${postId}`);
      },
    },
  ];
  const bySlug = store.postBySlug?.bind(store);
  if (bySlug)
    routes.push({
      method: 'GET',
      path: '/api/posts/by-slug/:slug',
      handle: async ({ params }) => {
        const post = await bySlug(params.slug ?? '');
        return post ? ok(post) : missing(`post ${params.slug}`);
      },
    });
  return routes;
}
