/**
 * The blog's live workload, seeded: reads of users and posts (single and lists) and writes — new
 * users, new posts with tags, tags added to posts, post titles edited. Every write carries a marker
 * unique to it, so that `missingWrites` can find each acknowledged one in v2's database afterwards.
 * Each worker edits only its own posts (id ≡ worker mod workers), so the last edit it had
 * acknowledged must be a post's title in the end.
 */
import pg from 'pg';
import type { LoadRequest } from '../../src/bench/load.js';
import { postSlug } from './slug.js';

/** A small, seedable PRNG (mulberry32): the same seed draws the same operations. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

type Expected =
  | { kind: 'user'; email: string }
  | { kind: 'post'; title: string }
  | { kind: 'tag'; post: number; tag: string }
  | { kind: 'edit'; post: number; title: string };

export interface BlogWorkload {
  next(worker: number, seq: number): LoadRequest;
  /** The acknowledged writes (in the order they were acknowledged) that a v2 database lacks. */
  missingWrites(databaseUrl: string, acknowledged: { id: string }[]): Promise<string[]>;
}

export function blogWorkload(options: {
  seed: number;
  runId: string;
  users: number;
  posts: number;
  workers: number;
}): BlogWorkload {
  const random = seededRandom(options.seed);
  const pick = (n: number) => 1 + Math.floor(random() * n);
  const expected = new Map<string, Expected>();

  const next = (worker: number, seq: number): LoadRequest => {
    const marker = `${options.runId}-w${worker}-${seq}`;
    const roll = random();
    if (roll < 0.2) return { method: 'GET', path: `/api/users/${pick(options.users)}` };
    if (roll < 0.45) return { method: 'GET', path: `/api/posts/${pick(options.posts)}` };
    if (roll < 0.55) return { method: 'GET', path: '/api/posts?limit=10' };
    if (roll < 0.62) return { method: 'GET', path: '/api/users?limit=10' };
    if (roll < 0.72) {
      const email = `${marker}@example.com`;
      expected.set(marker, { kind: 'user', email });
      return {
        method: 'POST',
        path: '/api/users',
        body: { email, name: `Zoë ${marker}` },
        write: { kind: 'user', id: marker },
      };
    }
    if (roll < 0.82) {
      const title = `Post ${marker}: Grüße`;
      expected.set(marker, { kind: 'post', title });
      return {
        method: 'POST',
        path: '/api/posts',
        body: {
          authorId: pick(options.users),
          title,
          content: `by ${marker}`,
          tags: ['node', `t-${marker}`],
        },
        write: { kind: 'post', id: marker },
      };
    }
    if (roll < 0.91) {
      const post = pick(options.posts);
      const tag = `t-${marker}`;
      expected.set(marker, { kind: 'tag', post, tag });
      return {
        method: 'POST',
        path: `/api/posts/${post}/tags`,
        body: { name: tag },
        write: { kind: 'tag', id: marker },
      };
    }
    // A post of this worker's own.
    const own = Math.floor(options.posts / options.workers);
    const post = worker + 1 + options.workers * Math.floor(random() * own);
    const title = `Edited ${marker} – ✓`;
    expected.set(marker, { kind: 'edit', post, title });
    return {
      method: 'PATCH',
      path: `/api/posts/${post}`,
      body: { title },
      write: { kind: 'edit', id: marker },
    };
  };

  const missingWrites = async (databaseUrl: string, acknowledged: { id: string }[]) => {
    const writes = acknowledged.map((a) => ({ marker: a.id, want: expected.get(a.id) }));
    const lastEdit = new Map<number, string>();
    for (const w of writes) if (w.want?.kind === 'edit') lastEdit.set(w.want.post, w.marker);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const emails = new Set(
        (await client.query<{ email: string }>(`SELECT email FROM users`)).rows.map((r) => r.email),
      );
      const posts = new Map(
        (
          await client.query<{ id: number; title: string; slug: string }>(`SELECT id, title, slug FROM posts`)
        ).rows.map((r) => [r.id, r]),
      );
      const titles = new Set([...posts.values()].map((p) => p.title));
      const tagged = new Set(
        (
          await client.query<{ key: string }>(
            `SELECT pt.post_id || '/' || t.name AS key FROM post_tags pt JOIN tags t ON t.id = pt.tag_id`,
          )
        ).rows.map((r) => r.key),
      );
      return writes
        .filter(({ marker, want }) => {
          switch (want?.kind) {
            case 'user':
              return !emails.has(want.email);
            case 'post':
              return !titles.has(want.title);
            case 'tag':
              return !tagged.has(`${want.post}/${want.tag}`);
            case 'edit': {
              // Only a post's last acknowledged edit must show; a later one overwrote the others.
              if (lastEdit.get(want.post) !== marker) return false;
              const post = posts.get(want.post);
              return post?.title !== want.title || post.slug !== postSlug(want.title, want.post);
            }
            default:
              return true;
          }
        })
        .map(({ marker, want }) => `${want?.kind ?? 'unknown'} ${marker}`);
    } finally {
      await client.end();
    }
  };

  return { next, missingWrites };
}
