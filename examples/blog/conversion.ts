/**
 * Blog v1 → v2: Prisma's tables to Drizzle's. Source tables are named as PostgreSQL stores them
 * (`User`, `PostTag`: Prisma quotes its PascalCase names), source columns too (`authorId`).
 *
 * - `User` → `users`, its `name` as `display_name`;
 * - `Tag` → `tags`, unchanged;
 * - `Post` → `posts`, its `content` as `body`, with a `slug` derived from the title and the id;
 * - `PostTag` (composite key) → `post_tags`.
 *
 * Ids are kept, so every reference stays as it was; Imago brings v2's sequences past them before the
 * switch. The order is the foreign keys' (v2 has them): users and tags before posts, posts before
 * their tags.
 */
import { defineConversion, identity, type Row } from 'imago/conversion';
import { postSlug } from './slug.js';

function value(row: Row, column: string): string {
  const v = row[column];
  if (v === null || v === undefined) throw new Error(`${column} is null`);
  return v;
}

export default defineConversion({
  tables: {
    User: {
      transform: (user) => [
        {
          table: 'users',
          row: {
            id: value(user, 'id'),
            email: value(user, 'email'),
            display_name: value(user, 'name'),
            created_at: value(user, 'createdAt'),
            updated_at: value(user, 'updatedAt'),
          },
        },
      ],
    },
    Tag: identity('tags'),
    Post: {
      transform: (post) => [
        {
          table: 'posts',
          row: {
            id: value(post, 'id'),
            author_id: value(post, 'authorId'),
            title: value(post, 'title'),
            slug: postSlug(value(post, 'title'), value(post, 'id')),
            body: post.content ?? null,
            published: value(post, 'published'),
            created_at: value(post, 'createdAt'),
            updated_at: value(post, 'updatedAt'),
          },
        },
      ],
    },
    PostTag: {
      transform: (tagging) => [
        {
          table: 'post_tags',
          row: {
            post_id: value(tagging, 'postId'),
            tag_id: value(tagging, 'tagId'),
            assigned_at: value(tagging, 'assignedAt'),
          },
        },
      ],
    },
  },
});
